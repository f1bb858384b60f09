"""The evidence rule on real normal noise (scene 005, rows 0-37), across classes, frame rates,
calibration lengths and seeds (issue 28).

Scene 005 is three minutes of normal driving: frames 0-2999 are the calibration pool,
frames 3000-5124 are never seen by any calibration here and supply "unseen normal"
footage (block-bootstrapped, blocks reversed at random) and the noise hazards are lifted
on. Hypothesis runs derandomized, so CI sees the same examples every time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hazardwatch.detect.detector import DetectionEvent, DetectorParams, TemporalDetector
from hazardwatch.detect.evidence import logit
from hazardwatch.detect.normal import CameraNormal, calibrate, evidence_noise

pytestmark = pytest.mark.shared

PARAMS = DetectorParams()  # the shipped defaults
POOL = 3000
CLASSES = (
    "animal",
    "debris",
    "obstacle",
    "generic",
    "construction",
    "pedestrian",
    "emergency",
    "crash",
    "stalled",
)
PROPERTY = settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def footage(scene_005: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    assert set(scene_005) == set(CLASSES)
    return scene_005


def threshold(normal: CameraNormal, name: str) -> float:
    value = normal.classes[name].threshold
    assert value is not None, f"{name} was calibrated without a threshold"
    return value


def calibrated(values: np.ndarray, fps: float, name: str) -> CameraNormal:
    """One class calibrated on `values` at `fps`, with its share of the shipped budget."""
    times = np.arange(values.size) / fps
    budget = PARAMS.false_alarms_per_day / len(CLASSES)
    classes = calibrate({name: values}, times, PARAMS.evidence, budget)
    return CameraNormal(classes=classes, source="calibrated")


def run(values: np.ndarray, fps: float, name: str, normal: CameraNormal) -> list[DetectionEvent]:
    detector = TemporalDetector("cam", PARAMS, normal=CameraNormal.from_json(normal.to_json()))
    events: list[DetectionEvent] = []
    for i, value in enumerate(values):
        events += detector.update(i / fps, {name: float(value)}, ref=i)
    events += detector.flush((values.size - 1) / fps)
    return events


def opened(events: list[DetectionEvent]) -> list[DetectionEvent]:
    return [e for e in events if e.kind == "started"]


def bootstrap(values: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """Blocks of 30 s of 10-fps footage, each forward or reversed, to `frames` samples."""
    block = 300
    parts, total = [], 0
    while total < frames:
        start = int(rng.integers(0, values.size - block))
        part = values[start : start + block]
        parts.append(part if rng.random() < 0.5 else part[::-1])
        total += block
    return np.concatenate(parts)[:frames]


def lifted(noise: np.ndarray, normal: CameraNormal, name: str, sigmas: float) -> np.ndarray:
    """The class `sigmas` noise units above the top of its calibrated band, with its own
    held-out noise riding on it (in logits)."""
    band = normal.classes[name]
    wobble = np.array([logit(v) for v in noise]) - np.median([logit(v) for v in noise])
    level = logit(band.high) + sigmas * evidence_noise(band)
    return 1.0 / (1.0 + np.exp(-(level + wobble)))


@PROPERTY
@given(
    name=st.sampled_from(CLASSES),
    calibration_fps=st.sampled_from([5.0, 10.0, 15.0, 30.0]),
    seconds=st.integers(60, 300),
    replay_fps=st.floats(5.0, 30.0),
    start=st.integers(0, 1000),
)
def test_a_calibration_never_alarms_on_the_footage_it_saw(
    footage, name: str, calibration_fps: float, seconds: int, replay_fps: float, start: int
) -> None:
    frames = min(int(seconds * calibration_fps), POOL - start)
    seen = footage[name][start : start + frames]
    normal = calibrated(seen, calibration_fps, name)
    for series in (seen, seen[::-1]):
        assert opened(run(series, replay_fps, name, normal)) == [], (
            f"{name}: calibrated at {calibration_fps} fps on {frames} frames, replayed at "
            f"{replay_fps:.1f} fps"
        )


@pytest.mark.parametrize("fps", [5.0, 10.0, 15.0, 30.0])
def test_an_hour_of_unseen_normal_footage_keeps_to_the_budget(footage, fps: float) -> None:
    """Every class calibrated on frames 0-2999 at 10 fps, then one hour per class of
    block-bootstrapped unseen footage (frames 3000-) replayed at `fps`: nine class-hours.

    The budget (1 a day per camera) expects 0.04 events in this hour; the test allows 1
    (a Poisson count at the budget exceeds 1 with probability below 0.001, reaches 1 with
    0.04): this is unseen footage of a *moving* camera, whose next three minutes show roads
    the calibration never saw.
    Measured: none at any of the four rates; 2 at 5 fps (crash) while the threshold was
    the tail pooled over the replay rates alone (docs/detection.md,
    bench/false_alarm_rate.py).
    """
    rng = np.random.default_rng(int(fps))
    total = 0
    for name in CLASSES:
        normal = calibrated(footage[name][:POOL], 10.0, name)
        unseen = bootstrap(footage[name][POOL:], int(3600 * fps), rng)
        total += len(opened(run(unseen, fps, name, normal)))
    print(f"unseen normal footage at {fps} fps: {total} event(s) in nine class-hours")
    assert total <= 1


@PROPERTY
@given(
    name=st.sampled_from(CLASSES),
    fps=st.sampled_from([5.0, 10.0, 15.0, 20.0, 30.0]),
    seconds=st.integers(60, 300),
)
def test_every_class_lifted_from_the_first_frame_fires_within_seconds(
    footage, name: str, fps: float, seconds: int
) -> None:
    """Lifted by half the class's threshold per second above the reference: the evidence
    needs two seconds at that excess (the threshold is in noise units times seconds)."""
    normal = calibrated(footage[name][: int(seconds * 10)], 10.0, name)
    noise = footage[name][POOL : POOL + int(60 * fps)]
    sigmas = PARAMS.reference_z + threshold(normal, name) / 2.0
    events = opened(run(lifted(noise, normal, name, sigmas), fps, name, normal))
    assert events, f"{name} lifted {sigmas:.0f} noise units above its band never fired"
    assert events[0].at <= 5.0
    assert events[0].started_at <= 1.0  # the onset is where the evidence began


@PROPERTY
@given(name=st.sampled_from(CLASSES), fps=st.sampled_from([5.0, 10.0, 30.0]))
def test_a_one_second_strong_lift_fires(footage, name: str, fps: float) -> None:
    """One second at probability 0.99 in a minute of normal footage: one event, opened
    during that second by the burst limit (the CUSUM alone needs threshold / (z − k)
    seconds of evidence, more than one for every class)."""
    normal = calibrated(footage[name][:POOL], 10.0, name)
    values = footage[name][POOL : POOL + int(60 * fps)].copy()
    values[int(30 * fps) : int(31 * fps)] = 0.99
    events = opened(run(values, fps, name, normal))
    assert len(events) == 1, f"{name} at {fps} fps: {len(events)} event(s)"
    assert 30.0 <= events[0].started_at <= 31.0
    assert events[0].at <= 31.0
    assert (events[0].threshold or 0.0) == normal.classes[name].burst


@PROPERTY
@given(name=st.sampled_from(CLASSES), fps=st.sampled_from([5.0, 10.0, 30.0]))
def test_a_slow_climb_fires_once_it_leaves_normal_and_stays_open(
    footage, name: str, fps: float
) -> None:
    """Five minutes from the band's middle to 10 noise units above its top."""
    normal = calibrated(footage[name][:POOL], 10.0, name)
    band = normal.classes[name]
    frames = int(300 * fps)
    noise = np.resize(footage[name][POOL:], frames)
    wobble = np.array([logit(v) for v in noise]) - np.median([logit(v) for v in noise])
    start, end = logit(band.level), logit(band.high) + 10.0 * evidence_noise(band)
    level = start + (end - start) * np.arange(frames) / frames
    events = run(1.0 / (1.0 + np.exp(-(level + wobble))), fps, name, normal)
    first = opened(events)
    assert first, f"{name}: the climb never fired at {fps} fps"
    assert first[0].at > 30.0  # not while the level is still inside its normal band
    closed = [e for e in events if e.kind == "ended" and e.end_reason != "flushed"]
    assert all(e.at < 200.0 for e in closed), "an event closed in the climb's last third"


@pytest.mark.parametrize("fps", [5.0, 10.0, 15.0, 30.0])
def test_the_same_hazard_at_any_frame_rate_gives_the_same_event(footage, fps: float) -> None:
    """A minute of normal, 20 s of a hazard 6 noise units above the band, a minute of
    normal: resampled to each frame rate from the same 30-fps timeline."""
    name = "pedestrian"
    normal = calibrated(footage[name][:POOL], 10.0, name)
    t = np.arange(0.0, 140.0, 1.0 / fps)
    source = np.resize(footage[name][POOL:], 1400)  # 10-fps noise under the timeline
    values = source[np.minimum((t * 10).astype(int), source.size - 1)].copy()
    inside = (t >= 60.0) & (t < 80.0)
    values[inside] = lifted(values[inside], normal, name, 6.0)
    events = run(values, fps, name, normal)
    starts = opened(events)
    ends = [e for e in events if e.kind == "ended"]
    assert len(starts) == 1 and len(ends) == 1
    assert 60.0 <= starts[0].started_at <= 61.0
    assert 60.0 <= starts[0].at <= 61.0  # the burst limit; measured: 60.4-60.5 s at every rate
    assert 80.0 <= ends[0].at <= 100.0  # measured: 96.6-96.9 s (the statistic drains)


def test_a_restart_mid_incident_still_fires(footage) -> None:
    name = "animal"
    fps = 10.0
    normal = calibrated(footage[name][:POOL], fps, name)
    noise = footage[name][POOL : POOL + 600]
    values = np.r_[noise[:300], lifted(noise[300:], normal, name, 8.0)]
    first = TemporalDetector("cam", PARAMS, normal=normal)
    for i in range(320):  # the process dies two seconds into the hazard
        first.update(i / fps, {name: float(values[i])})
    normal.baselines = first.baselines()
    restarted = TemporalDetector("cam", PARAMS, normal=CameraNormal.from_json(normal.to_json()))
    events: list[DetectionEvent] = []
    for i in range(320, 600):
        events += restarted.update(i / fps, {name: float(values[i])})
    assert opened(events) and opened(events)[0].at <= 32.0 + 5.0
    assert math.isfinite(opened(events)[0].statistic or math.nan)
    assert (opened(events)[0].statistic or 0.0) >= (opened(events)[0].threshold or math.inf)
