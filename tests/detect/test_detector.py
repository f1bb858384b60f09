from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hazardwatch.detect.detector import (
    ChannelState,
    DetectionEvent,
    DetectorParams,
    TemporalDetector,
)

PARAMS = DetectorParams(
    smoothing_s=0.0,
    enter_threshold=0.5,
    exit_threshold=0.3,
    min_duration_s=1.0,
    cooldown_s=5.0,
    max_event_s=30.0,
    baseline=False,
)


def feed(detector: TemporalDetector, samples: list[tuple[float, float]]) -> list[DetectionEvent]:
    events = []
    for i, (t, score) in enumerate(samples):
        events.extend(detector.update(t, {"fire": score}, ref=i))
    return events


def square_wave(on_from: float, on_to: float, hz: float = 10, total: float = 20, hi: float = 0.9):
    return [(i / hz, hi if on_from <= i / hz < on_to else 0.1) for i in range(int(total * hz))]


def test_start_update_end_with_times_peak_and_mean() -> None:
    samples = square_wave(2.0, 6.0)
    samples[45] = (samples[45][0], 1.0)  # a peak at 4.5 s
    events = feed(TemporalDetector("cam", PARAMS), samples)
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and kinds[-1] == "ended" and "updated" in kinds
    start, end = events[0], events[-1]
    assert start.started_at == pytest.approx(2.0)  # back-dated to the first crossing
    assert start.at == pytest.approx(3.0)  # decided after min_duration
    assert end.ended_at == pytest.approx(6.0) and end.end_reason == "below_exit"
    assert end.peak_score == 1.0 and end.peak_at == pytest.approx(4.5) and end.peak_ref == 45
    assert 0.9 < end.mean_score < 1.0
    assert len({e.event_id for e in events}) == 1


def test_short_blip_is_not_an_event() -> None:
    assert feed(TemporalDetector("cam", PARAMS), square_wave(2.0, 2.8)) == []


def test_hysteresis_keeps_event_open_between_exit_and_enter() -> None:
    samples = [(i / 10, 0.9 if i < 40 else 0.4) for i in range(100)]
    events = feed(TemporalDetector("cam", PARAMS), samples)
    assert [e.kind for e in events] == ["started"]  # 0.4 is above exit 0.3


def test_max_event_length_ends_and_cooldown_delays_restart() -> None:
    samples = [(i / 10, 0.9) for i in range(500)]  # 50 s of constant hazard
    events = [e for e in feed(TemporalDetector("cam", PARAMS), samples) if e.kind != "updated"]
    assert [e.kind for e in events] == ["started", "ended", "started"]
    assert events[1].end_reason == "max_duration"
    assert events[2].started_at >= events[1].ended_at + PARAMS.cooldown_s  # type: ignore[operator]


def test_baseline_absorbs_a_constant_level_but_not_a_rise() -> None:
    params = DetectorParams(
        smoothing_s=0.5,
        enter_threshold=0.2,
        exit_threshold=0.1,
        min_duration_s=1.0,
        cooldown_s=5,
        baseline=True,
        baseline_s=10,
    )
    detector = TemporalDetector("cam", params)
    steady = [(i / 10, 0.6) for i in range(600)]  # a parked car that always scores 0.6
    assert feed(detector, steady) == []
    rise = [(60 + i / 10, 0.95) for i in range(50)]
    events = feed(detector, rise)
    assert events and events[0].kind == "started"
    assert detector.baseline("fire") == pytest.approx(0.6, abs=0.01)  # frozen during the event


def test_out_of_order_samples_are_skipped_and_counted() -> None:
    detector = TemporalDetector("cam", PARAMS)
    detector.update(1.0, {"fire": 0.1})
    detector.update(2.0, {"fire": 0.1})
    detector.update(1.5, {"fire": 0.9})
    assert detector.skipped_out_of_order == 1


def test_flush_closes_open_events_and_channel_filter_applies() -> None:
    detector = TemporalDetector("cam", PARAMS, channels=["fire"])
    for i in range(30):
        detector.update(i / 10, {"fire": 0.9, "normal_traffic": 0.9})
    assert detector.active_channels == ["fire"]
    flushed = detector.flush(3.0)
    assert [(e.kind, e.end_reason) for e in flushed] == [("ended", "flushed")]
    assert detector.state("fire") == ChannelState.COOLDOWN


def test_non_finite_scores_are_ignored() -> None:
    detector = TemporalDetector("cam", PARAMS)
    detector.update(0.0, {"fire": 0.1})
    detector.update(0.1, {"fire": math.nan})
    assert detector.smoothed("fire") == 0.1


def test_exit_above_enter_is_rejected() -> None:
    with pytest.raises(ValueError, match="exit_threshold"):
        DetectorParams(enter_threshold=0.2, exit_threshold=0.3)


# ---------------------------------------------------------------------------- properties

scores = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=300)
gaps = st.lists(st.floats(0.01, 2.0), min_size=300, max_size=300)
params_strategy = st.builds(
    DetectorParams,
    smoothing_s=st.floats(0.0, 3.0),
    enter_threshold=st.floats(0.2, 0.8),
    exit_threshold=st.just(0.15),
    min_duration_s=st.floats(0.0, 3.0),
    cooldown_s=st.floats(0.0, 10.0),
    max_event_s=st.floats(1.0, 60.0),
    baseline=st.booleans(),
    baseline_s=st.floats(1.0, 100.0),
)


def _timeline(values: list[float], dts: list[float]) -> list[tuple[float, float]]:
    t, out = 0.0, []
    for v, dt in zip(values, dts, strict=False):
        out.append((t, v))
        t += dt
    return out


def _run(params: DetectorParams, samples: list[tuple[float, float]]) -> list[list[tuple]]:
    detector = TemporalDetector("cam", params)
    out = []
    for t, v in samples:
        out.append(
            [
                (e.kind, e.started_at, e.at, e.peak_score, e.ended_at)
                for e in detector.update(t, {"x": v})
            ]
        )
    return out


@settings(max_examples=150, deadline=None)
@given(params=params_strategy, values=scores, extra=scores, dts=gaps)
def test_appending_samples_never_changes_past_decisions(params, values, extra, dts) -> None:
    prefix = _timeline(values, dts)
    full = _timeline(values + extra, dts + dts)
    assert _run(params, full)[: len(prefix)] == _run(params, prefix)


@settings(max_examples=150, deadline=None)
@given(params=params_strategy, values=scores, dts=gaps)
def test_no_event_shorter_than_min_duration_and_no_flapping(params, values, dts) -> None:
    detector = TemporalDetector("cam", params)
    ended: list[DetectionEvent] = []
    started: list[DetectionEvent] = []
    for t, v in _timeline(values, dts):
        for event in detector.update(t, {"x": v}):
            (started if event.kind == "started" else ended if event.kind == "ended" else []).append(
                event
            )
    for event in ended:
        assert event.duration_s >= params.min_duration_s - 1e-9
    for previous, nxt in zip(ended, started[1:], strict=False):
        assert previous.ended_at is not None
        assert nxt.started_at >= previous.ended_at + params.cooldown_s - 1e-9
