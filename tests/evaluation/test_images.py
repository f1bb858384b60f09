from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hazardwatch.errors import ConfigError
from hazardwatch.evaluation.images import LabelMap, evaluate_images, plot_confusion
from hazardwatch.evaluation.metrics import roc_auc
from hazardwatch.scoring.bank import load_bank
from tests.fakes import FakeEncoder


def make_folders(root: Path) -> Path:
    """Accident/ holds red-object scenes (the fake encoder's crash), Non Accident/ grey ones."""
    rng = np.random.default_rng(0)
    for folder, red in (("Accident", True), ("Non Accident", False)):
        (root / folder).mkdir(parents=True)
        for i in range(6):
            image = np.full((120, 160, 3), 150, np.uint8) + rng.integers(
                0, 10, (120, 160, 3), dtype=np.uint8
            )
            if red:
                image[20:100, 30:130] = (20, 20, 230)
            cv2.imwrite(str(root / folder / f"{i}.jpg"), image)
    (root / "Accident" / "broken.jpg").write_bytes(b"not an image")
    return root


def test_accuracy_confusion_auc_and_few_shot(tmp_path: Path) -> None:
    root = make_folders(tmp_path / "data")
    refs = tmp_path / "refs"
    refs.mkdir()
    cv2.imwrite(str(refs / "r.jpg"), np.full((120, 160, 3), 150, np.uint8))
    report = evaluate_images(
        root,
        FakeEncoder(),
        load_bank(None),
        ["Accident=traffic_accident", "Non Accident=normal"],
        top_k=3,
        normal_refs=refs,
    )
    assert report["images"] == 12 and len(report["skipped_unreadable"]) == 1
    assert report["accuracy"] == 1.0 and report["top_3_accuracy"] == 1.0
    assert report["confusion_matrix"] == [[6, 0, 0], [0, 6, 0]]
    assert report["per_class"]["Accident"]["f1"] == 1.0
    assert report["roc_auc_hazard_vs_normal"] == 1.0
    assert report["few_shot"]["roc_auc_anomaly"] == 1.0
    plot_confusion(tmp_path / "c.png", report)
    assert (tmp_path / "c.png").stat().st_size > 5000
    json.dumps(report)


def test_label_map_errors() -> None:
    bank = load_bank(None)
    with pytest.raises(ConfigError, match="not a bank class"):
        LabelMap.parse(["A=unicorn", "B=normal"], ["A", "B"], bank)
    with pytest.raises(ConfigError, match="folders without --map"):
        LabelMap.parse(["A=hazard"], ["A", "B"], bank)


def test_roc_auc_known_values() -> None:
    assert roc_auc(np.array([0.9, 0.8, 0.1, 0.2]), np.array([True, True, False, False])) == 1.0
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == 0.5
    assert roc_auc(np.array([0.1, 0.9]), np.array([True, False])) == 0.0
    assert roc_auc(np.array([0.1]), np.array([True])) is None
