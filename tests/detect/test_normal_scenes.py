"""Issue 14's three scenes, built from real CLIP score noise (scene 005: normal driving).

Scene 005's class probabilities (rows 0-37, the eval bank's classes) are split in two:
frames 0-2999 (100 s) calibrate the camera's normal; frames 3000-5124 (71 s) are never
seen by the calibration and supply the noise of the constructed scenes, looped as needed.
The hazard is written into the `animal` channel as a level plus that channel's own
held-out noise; every other channel keeps its real held-out values.

Each test also runs today's detector (no normal state: baseline from the first sample,
learning freely while idle) to show what the new one changes.
"""

from __future__ import annotations

import numpy as np
import pytest

from hazardwatch.detect.detector import DetectionEvent, DetectorParams, TemporalDetector
from hazardwatch.detect.normal import CameraNormal, calibrate

pytestmark = pytest.mark.shared

FPS = 30.0
CALIBRATION_FRAMES = 3000
CHANNEL = "animal"
PARAMS = DetectorParams()  # the shipped defaults


@pytest.fixture(scope="module")
def normal_footage(
    scene_005: dict[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(calibration part, held-out part) of scene 005's class probabilities."""
    calib = {n: v[:CALIBRATION_FRAMES] for n, v in scene_005.items()}
    held = {n: v[CALIBRATION_FRAMES:] for n, v in scene_005.items()}
    return calib, held


@pytest.fixture(scope="module")
def calibrated(normal_footage) -> CameraNormal:
    calib, _ = normal_footage
    times = np.arange(CALIBRATION_FRAMES) / FPS
    classes = calibrate(calib, times, PARAMS.evidence, PARAMS.false_alarms_per_day)
    return CameraNormal(classes=classes, source="calibrated")


def scene(held: dict[str, np.ndarray], level: np.ndarray) -> dict[str, np.ndarray]:
    """Held-out footage looped to len(level); CHANNEL = level + its own held-out noise."""
    n = len(level)
    looped = {name: np.resize(values, n) for name, values in held.items()}
    noise = looped[CHANNEL] - np.median(held[CHANNEL])
    looped[CHANNEL] = np.clip(level + noise, 0.0, 1.0)
    return looped


def run(channels: dict[str, np.ndarray], normal: CameraNormal | None) -> list[DetectionEvent]:
    detector = TemporalDetector("cam", PARAMS, normal=normal)
    events: list[DetectionEvent] = []
    n = len(next(iter(channels.values())))
    for i in range(n):
        events += detector.update(i / FPS, {k: float(v[i]) for k, v in channels.items()}, ref=i)
    events += detector.flush((n - 1) / FPS)
    return events


def starts(events: list[DetectionEvent]) -> list[DetectionEvent]:
    return [e for e in events if e.kind == "started"]


def test_calibration_learns_this_cameras_band(calibrated: CameraNormal, normal_footage) -> None:
    band = calibrated.classes[CHANNEL]
    calib, _ = normal_footage
    assert band.low < band.level < band.high
    assert band.level == pytest.approx(np.median(calib[CHANNEL]), abs=0.02)
    assert band.high < 0.3  # animal is rare on this road: the band is narrow


def test_a_scene_that_starts_inside_a_hazard_fires_within_5s(
    calibrated: CameraNormal, normal_footage
) -> None:
    _, held = normal_footage
    hazard = scene(held, np.full(int(60 * FPS), 0.6))  # an animal on the road from frame 0
    new = starts(run(hazard, CameraNormal.from_json(calibrated.to_json())))
    assert new and new[0].channel == CHANNEL
    assert new[0].at <= 5.0
    # Today's detector takes the first sample as the baseline: the hazard is "normal".
    assert [e for e in starts(run(hazard, None)) if e.channel == CHANNEL] == []


def test_a_slow_climb_to_0_6_over_5_minutes_fires_after_the_first_minute(
    calibrated: CameraNormal, normal_footage
) -> None:
    _, held = normal_footage
    start_level = calibrated.classes[CHANNEL].level
    climb_s = 300.0
    n = int(climb_s * FPS)
    level = start_level + (0.6 - start_level) * np.arange(n) / n
    climb = scene(held, level)
    events = run(climb, CameraNormal.from_json(calibrated.to_json()))
    opened = starts(events)
    assert opened, "the climb never opened an event"
    assert all(e.at > 60.0 for e in opened), "an event opened in the climb's first minute"
    assert {e.channel for e in opened} == {CHANNEL}
    lo, hi = 2 * climb_s / 3, climb_s
    spans = [(e.started_at, e.at) for e in events if e.kind == "ended"]
    open_in_third = sum(max(0.0, min(end, hi) - max(start, lo)) for start, end in spans)
    assert open_in_third >= 0.8 * (hi - lo)
    # Today's baseline follows the climb with a lag of baseline_s x slope (~0.1): no event.
    assert [e for e in starts(run(climb, None)) if e.channel == CHANNEL] == []


def test_normal_footage_the_calibration_did_not_see_opens_no_event(
    calibrated: CameraNormal, normal_footage
) -> None:
    _, held = normal_footage
    looped = {name: np.resize(values, int(300 * FPS)) for name, values in held.items()}
    assert starts(run(looped, CameraNormal.from_json(calibrated.to_json()))) == []


def test_a_restart_in_the_middle_of_an_incident_still_alerts(
    calibrated: CameraNormal, normal_footage
) -> None:
    """Baselines saved before the hazard and restored after a restart inside it."""
    _, held = normal_footage
    level = np.r_[np.full(int(30 * FPS), 0.07), np.full(int(30 * FPS), 0.6)]
    normal_then_hazard = scene(held, level)
    state = CameraNormal.from_json(calibrated.to_json())
    detector = TemporalDetector("cam", PARAMS, normal=state)
    half = int(40 * FPS)  # ten seconds into the hazard, the process dies
    for i in range(half):
        detector.update(i / FPS, {k: float(v[i]) for k, v in normal_then_hazard.items()})
    state.baselines = detector.baselines()  # what the service stored (frozen during the event)
    restarted = TemporalDetector("cam", PARAMS, normal=CameraNormal.from_json(state.to_json()))
    events = []
    for i in range(half, len(normal_then_hazard[CHANNEL])):
        update = {k: float(v[i]) for k, v in normal_then_hazard.items()}
        events += restarted.update(i / FPS, update)
    opened = starts(events)
    assert opened and opened[0].channel == CHANNEL
    assert opened[0].at - half / FPS <= 5.0
