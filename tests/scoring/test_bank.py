from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hazardwatch.errors import ConfigError
from hazardwatch.scoring.bank import (
    PromptBank,
    class_cosines_from_prompts,
    class_probabilities,
    load_bank,
)

REQUIRED_HAZARDS = {
    "traffic_accident",
    "fire_smoke",
    "person_lying",
    "pedestrian_on_highway",
    "animal_on_road",
    "debris_on_road",
    "stalled_vehicle",
    "flooding",
}
REQUIRED_NORMAL = {"normal_traffic", "empty_road", "parked_cars", "people_walking"}


def test_default_bank_covers_the_required_classes() -> None:
    bank = load_bank(None)
    assert set(bank.hazard_classes) >= REQUIRED_HAZARDS
    assert {c.name for c in bank.classes if c.kind == "normal"} >= REQUIRED_NORMAL
    assert all(len(c.prompts) >= 2 for c in bank.classes)
    assert len(bank.version) == 12


def test_shipped_eval_bank_covers_the_generic_rows(shared_dir: Path) -> None:
    import json

    rows = json.loads(
        (shared_dir / "data/hazard-scenes/scores/scene_005_prompts.json").read_text()
    )["prompts"]
    bank = PromptBank.from_file(
        Path(__file__).resolve().parents[2] / "config/eval/hazard-scenes.yaml"
    )
    assert set(rows[:38]) == set(bank.prompts)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("classes: []", "expected a mapping"),
        ("classes:\n  Bad Name: {kind: hazard, prompts: [x]}", "class name"),
        ("classes:\n  a: {kind: weird, prompts: [x]}", "kind must be"),
        ("classes:\n  a: {kind: hazard, prompts: []}", "non-empty list"),
        ("classes:\n  a: {kind: hazard, prompts: [x], colour: red}", "unknown key"),
        ("classes:\n  a: {kind: normal, prompts: [x]}", "at least one class"),
        (
            "classes:\n  a: {kind: hazard, prompts: [x]}\n  b: {kind: hazard, prompts: [x]}",
            "appears in",
        ),
        ("classes:\n  a: {kind: hazard, severity: huge, prompts: [x]}", "severity"),
        (
            "classes:\n  a: {kind: hazard, prompts: [x], "
            "enter_threshold: 0.1, exit_threshold: 0.3}",
            "exit_threshold",
        ),
        ("classes: [unclosed", "not valid YAML"),
    ],
)
def test_bad_banks_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        PromptBank.from_text(text)


def test_class_probabilities_and_prompt_grouping() -> None:
    sims = np.array([[0.30, 0.20], [0.28, 0.22], [0.10, 0.25]])  # 3 prompts × 2 frames
    cos = class_cosines_from_prompts(sims, np.array([0, 0, 1]), 2)
    np.testing.assert_allclose(cos, [[0.29, 0.21], [0.10, 0.25]])
    probs = class_probabilities(cos, 100.0)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0)
    assert probs[0, 0] > 0.99 and probs[1, 1] > 0.9


def test_a_bank_written_as_yaml_reads_back_the_same_classes() -> None:
    """What the API stores (`to_text`) is the bank: every field of every class, the
    shipped bank's priors included, with a camera scope."""
    import dataclasses

    from hazardwatch.scoring.bank import DEFAULT_BANK, PromptBank

    shipped = PromptBank.from_file(DEFAULT_BANK)
    scoped = dataclasses.replace(shipped.classes[0], cameras=("gate", "yard-2"))
    bank = PromptBank((scoped, *shipped.classes[1:]), "")
    again = PromptBank.from_text(bank.to_text())
    assert again.classes == bank.classes
    assert again.classes[0].watched_on("gate") and not again.classes[0].watched_on("dock")
    assert PromptBank.from_text(again.to_text()).version == again.version
