"""Fixtures of the detector tests: scene 005's real normal noise."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from hazardwatch.evaluation.scores import load_scene, scene_channels
from hazardwatch.scoring.bank import PromptBank
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="session")
def scene_005(shared_dir: Path) -> dict[str, np.ndarray]:
    """Scene 005's class probabilities per frame (rows 0-37, the eval bank's classes):
    three minutes of normal driving, 5125 frames."""
    data = shared_dir / "data" / "hazard-scenes"
    logger = logging.getLogger("hazardwatch")
    level = logger.level
    logger.setLevel(logging.ERROR)  # scene 005's known length warning
    try:
        scene = load_scene(data / "scores" / "scene_005.npy", data / "annotations", range(38))
    finally:
        logger.setLevel(level)
    bank = PromptBank.from_file(REPO_ROOT / "config" / "eval" / "hazard-scenes.yaml")
    return scene_channels(scene, bank, 100.0)
