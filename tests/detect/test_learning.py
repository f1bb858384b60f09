"""A camera never calibrated learns its normal online, then calibrates itself (issue 28.5)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from hazardwatch.detect.detector import DetectorParams
from hazardwatch.detect.learning import EVENT_MARGIN_S, KEEP_HZ, Learning
from hazardwatch.detect.normal import CameraNormal, calibrate
from hazardwatch.detect.stage import DetectorStage
from hazardwatch.records import EventUpdate, ScoredFrame
from hazardwatch.scoring.bank import Example, PromptBank
from tests.detect.test_stage import BANK, Saves, scored


def noise(seconds: float, fps: float, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(0.04 + 0.01 * rng.standard_normal(int(seconds * fps)), 0.001, 1.0)


def wait_for_result(learning: Learning) -> None:
    learning.join(30.0)
    assert learning.result() is not None


def test_learning_keeps_normal_frames_only_and_calibrates_once_it_has_enough() -> None:
    learning = Learning("gate", ["fire"], 60.0, DetectorParams().evidence, 1.0)
    values = noise(120, 10.0)
    for i, value in enumerate(values[:500]):  # 50 s at 10 fps, kept at KEEP_HZ
        learning.add(i / 10, {"fire": float(value)}, event_open=False)
    assert len(learning._times) == 50 * KEEP_HZ
    assert learning.seconds == 49.5 and not learning.start_when_ready()
    learning.add(50.0, {"fire": 0.9}, event_open=True)  # an event is open: not normal
    learning.add(50.5, {"other": 0.1}, event_open=False)  # a frame without the class
    assert learning._times[-1] == 49.5
    learning.event_started(45.0)  # what led up to an event is forgotten with it
    assert learning._times[-1] < 45.0 - EVENT_MARGIN_S + 1.0 / KEEP_HZ
    for i, value in enumerate(values[500:], start=500):
        learning.add(i / 10, {"fire": float(value)}, event_open=False)
    assert learning.start_when_ready() and learning.running
    assert not learning.start_when_ready()  # once
    wait_for_result(learning)
    fitted = learning.result()
    assert fitted is not None and fitted["fire"].threshold is not None
    assert fitted["fire"].low < 0.04 < fitted["fire"].high
    assert learning.progress() == {
        "learned_s": 60.0,
        "learning_s": 60.0,
        "classes": ["fire"],
    }


def test_a_camera_never_calibrated_calibrates_itself_and_saves_the_state() -> None:
    saves = Saves()
    events: list[EventUpdate] = []
    heard: list[tuple[str, bool]] = []
    stage = DetectorStage(
        DetectorParams(),
        events.append,
        save_state=saves,
        learning_s=60.0,
        on_learning=lambda camera, learning: heard.append((camera, learning)),
    )
    values = noise(90, 10.0)
    stage.on_scored([scored("gate", i / 10, float(v)) for i, v in enumerate(values[:300])])
    assert heard == [("gate", True)]
    summary = stage.calibration("gate")
    assert summary["calibrated"] is False
    assert summary["learning"] == {"learned_s": 29.5, "learning_s": 60.0, "classes": ["fire"]}
    stage.on_scored([scored("gate", i / 10, float(v)) for i, v in enumerate(values[:700])][300:])
    deadline = time.monotonic() + 30
    i = 700
    while heard[-1] != ("gate", False) and time.monotonic() < deadline:
        stage.on_scored([scored("gate", i / 10, float(values[i % values.size]))])
        i += 1
        time.sleep(0.01)
    assert heard == [("gate", True), ("gate", False)]
    normal = stage.normal("gate")
    assert normal is not None and normal.calibrated and normal.calibrated_s >= 60.0
    assert normal.classes["fire"].threshold is not None
    assert saves.calls[-1][1]["source"] == "calibrated"
    assert stage.calibration("gate")["learning"] is None
    stage.on_scored([scored("gate", i / 10, 0.04)])
    explained = stage.explain("gate")
    assert explained is not None and explained["classes"]["fire"]["rule"] == "evidence"
    assert events == []  # normal footage all along


def test_a_calibration_learned_by_shutdown_is_kept() -> None:
    saves = Saves()
    stage = DetectorStage(DetectorParams(), lambda e: None, save_state=saves, learning_s=10.0)
    values = noise(11, 10.0)
    stage.on_scored([scored("gate", i / 10, float(v)) for i, v in enumerate(values)])
    stage.flush()
    assert saves.calls[-1][1]["source"] == "calibrated"


def test_learning_off_or_a_calibrated_camera_learns_nothing() -> None:
    heard: list[tuple[str, bool]] = []
    stage = DetectorStage(
        DetectorParams(), lambda e: None, on_learning=lambda c, on: heard.append((c, on))
    )
    stage.on_scored([scored("gate", 0.0, 0.04)])
    assert heard == [] and stage.calibration("gate")["learning"] is None


def test_a_bank_with_other_classes_starts_the_learning_again() -> None:
    stage = DetectorStage(DetectorParams(), lambda e: None, learning_s=60.0)
    stage.on_scored([scored("gate", i / 10, 0.04) for i in range(100)])
    assert stage.calibration("gate")["learning"]["learned_s"] == 9.5
    other = PromptBank.from_text(
        "classes:\n  fire: {kind: hazard, prompts: [a fire]}\n"
        "  smoke: {kind: hazard, prompts: [smoke]}\n  street: {kind: normal, prompts: [a street]}\n"
    )
    frame = scored("gate", 10.0, 0.04)
    probabilities = {"fire": 0.04, "smoke": 0.02, "street": 0.94}
    stage.on_scored([dataclasses.replace(frame, probabilities=probabilities, bank=other)])
    assert BANK.hazard_classes != other.hazard_classes
    assert stage.calibration("gate")["learning"] == {
        "learned_s": 0.0,
        "learning_s": 60.0,
        "classes": ["fire", "smoke"],
    }


def example_bank(*sources: str) -> PromptBank:
    """The stage tests' bank plus `forklift`, a class by example (issue 26.4)."""

    lines = "".join(
        f"      - {{source: {s}, embedding: '{Example.of(s, np.eye(8)[i]).embedding}'}}\n"
        for i, s in enumerate(sources)
    )
    return PromptBank.from_text(
        BANK.to_text() + f"  forklift:\n    kind: hazard\n    model: m\n    examples:\n{lines}"
    )


def with_forklift(frame: ScoredFrame, bank: PromptBank, p: float) -> ScoredFrame:
    return dataclasses.replace(
        frame, probabilities={**frame.probabilities, "forklift": p}, bank=bank
    )


def test_a_class_added_to_a_calibrated_camera_learns_alone_then_fires() -> None:
    """The camera keeps its calibration of `fire`; only the new class learns, with its
    share of the budget, and is then decided by the evidence rule on its own noise."""
    rng = np.random.default_rng(5)
    fire = noise(120, 10.0)
    fitted = calibrate({"fire": fire}, np.arange(fire.size) / 10, DetectorParams().evidence, 1.0)
    normal = CameraNormal(classes=dict(fitted), source="calibrated", calibrated_s=120.0)
    saves, events, heard = Saves(), [], []
    stage = DetectorStage(
        DetectorParams(), events.append, normals={"gate": normal}, save_state=saves,
        learning_s=30.0, on_learning=lambda camera, on: heard.append(on),
    )  # fmt: skip
    bank = example_bank("event:a")
    forklift = np.clip(0.6 + 0.01 * rng.standard_normal(3000), 0, 1)

    def feed(i: int, p: float, b: PromptBank = bank) -> None:
        stage.on_scored([with_forklift(scored("gate", i / 10, float(fire[i % fire.size])), b, p)])

    feed(0, float(forklift[0]))
    slot = stage._cameras["gate"]
    assert slot.learning is not None and slot.learning.classes == ("forklift",)
    assert slot.learning._budget == pytest.approx(0.5)  # one of two classes' share
    assert stage.explain("gate")["classes"]["fire"]["rule"] == "evidence"  # kept
    assert stage.explain("gate")["classes"]["forklift"]["learning"] is True
    i = 1
    deadline = time.monotonic() + 30
    while heard[-1:] != [False] and time.monotonic() < deadline:
        feed(i, float(forklift[i % forklift.size]))
        i += 1
    assert heard == [True, False]
    assert normal.classes["fire"] == fitted["fire"] and normal.calibrated_s == 120.0
    assert normal.classes["forklift"].threshold is not None
    assert normal.definitions == {"forklift": bank.get("forklift").definition}
    assert saves.calls[-1][1]["definitions"] == normal.definitions
    for j in range(i, i + 300):  # normal footage: quiet
        feed(j, float(forklift[j % forklift.size]))
    assert events == []
    for j in range(i + 300, i + 320):  # the sight: two seconds close to an example
        feed(j, 0.95)
    assert {e.record.class_name for e in events} == {"forklift"}
    assert events[0].kind == "started"
    # Other examples make another channel: it is learned again, alone.
    feed(i + 400, 0.6, example_bank("event:a", "keyframe:7"))
    assert slot.learning is not None and slot.learning.classes == ("forklift",)


def test_a_class_no_frame_scores_does_not_hold_back_the_others() -> None:
    """A class by example that a worker of another model cannot score has no score on any
    frame: the camera still calibrates its other classes, each with its share."""
    learning = Learning("gate", ["fire", "forklift"], 30.0, DetectorParams().evidence, 2.0)
    values = noise(40, 10.0)
    for i, value in enumerate(values):
        learning.add(i / 10, {"fire": float(value), "street": 0.9}, event_open=False)
    assert learning.start_when_ready()
    wait_for_result(learning)
    fitted = learning.result()
    assert fitted is not None and set(fitted) == {"fire"}
    alone = Learning("gate", ["fire"], 30.0, DetectorParams().evidence, 1.0)
    for i, value in enumerate(values):
        alone.add(i / 10, {"fire": float(value)}, event_open=False)
    assert alone.start_when_ready()
    wait_for_result(alone)
    assert alone.result() == fitted  # the same share (2 a day over two classes)
