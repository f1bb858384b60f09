from __future__ import annotations

import dataclasses
import math
from dataclasses import replace
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hazardwatch.detect.detector import (
    ChannelState,
    DetectionEvent,
    DetectorParams,
    TemporalDetector,
    channel_params,
    rule_of,
)
from hazardwatch.detect.evidence import logit
from hazardwatch.detect.normal import CameraNormal
from hazardwatch.records import ClassNormal
from hazardwatch.scoring.bank import PromptBank

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
    detector.update(2.0, {"fire": 0.5})  # the same time again (a second view) is in order
    assert detector.skipped_out_of_order == 1 and detector.smoothed("fire") != 0.1


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


# ---------------------------------------------------------------------------- exact behaviour


def test_shipped_defaults() -> None:
    p = DetectorParams()
    assert (p.smoothing_s, p.enter_threshold, p.exit_threshold) == (1.0, 0.2, 0.15)
    assert (p.min_duration_s, p.cooldown_s, p.max_event_s) == (1.0, 10.0, 600.0)
    assert (p.baseline, p.baseline_s, p.normal_margin, p.reference_match) == (
        True,
        60.0,
        0.1,
        0.95,
    )


def test_smoothing_follows_the_time_constant_with_irregular_gaps() -> None:
    params = DetectorParams(smoothing_s=2.0, baseline=False)
    detector = TemporalDetector("cam", params)
    detector.update(0.0, {"x": 0.0})
    detector.update(1.0, {"x": 1.0})
    first = 1 - math.exp(-0.5)
    assert detector.smoothed("x") == pytest.approx(first)
    detector.update(4.0, {"x": 1.0})  # a 3 s gap weighs more than a 1 s one
    assert detector.smoothed("x") == pytest.approx(first + (1 - math.exp(-1.5)) * (1 - first))
    assert detector.signal("x") == detector.smoothed("x")  # baseline off: the signal is it


def test_baseline_learns_towards_the_level_with_its_time_constant() -> None:
    params = DetectorParams(smoothing_s=0.0, enter_threshold=0.5, exit_threshold=0.4, baseline_s=10)
    detector = TemporalDetector("cam", params)
    detector.update(0.0, {"x": 0.1})
    detector.update(5.0, {"x": 0.3})  # idle: the baseline moves part of the way
    expected = 0.1 + (1 - math.exp(-0.5)) * 0.2
    assert detector.baseline("x") == pytest.approx(expected)
    assert detector.signal("x") == pytest.approx(0.3 - expected)
    assert detector.progress("x") == pytest.approx((0.3 - expected) / 0.5)
    assert detector.baselines() == {"x": pytest.approx(expected)}
    assert detector.progress("unseen") is None
    negative = TemporalDetector("cam", replace(params, enter_threshold=-0.1, exit_threshold=-0.2))
    negative.update(0.0, {"x": 0.1})
    assert negative.progress("x") is None  # no fraction of a threshold at or below 0


def test_evidence_progress_is_the_statistic_over_the_calibrated_threshold() -> None:
    normal = CameraNormal(classes={"x": ClassNormal(0.01, 0.02, 0.05, noise=0.5, threshold=4.0)})
    detector = TemporalDetector("cam", DetectorParams(smoothing_s=0.0), normal=normal)
    detector.update(0.0, {"x": 0.02})
    detector.update(0.5, {"x": 0.2})  # z against the baseline, the first level (0.02)
    z = (math.log(0.2 / 0.8) - math.log(0.02 / 0.98)) / 0.5
    statistic = (z - 2.0) * 0.5
    assert detector.progress("x") == pytest.approx(statistic / 4.0)
    assert detector.signal("x") == detector.progress("x")


def test_values_exactly_at_a_threshold_do_not_cross_it() -> None:
    # Enter needs strictly above, exit strictly below: a signal sitting on a threshold stays.
    # (Values exact in binary, so smoothing's arithmetic lands on them exactly.)
    params = replace(PARAMS, enter_threshold=0.5, exit_threshold=0.25)
    samples = [(i / 10, 0.5) for i in range(30)]  # exactly enter
    assert feed(TemporalDetector("cam", params), samples) == []
    samples = [(i / 10, 0.75 if i < 20 else 0.25) for i in range(60)]  # then exactly exit
    events = feed(TemporalDetector("cam", params), samples)
    assert [e.kind for e in events if e.kind != "updated"] == ["started"]


def test_pending_for_exactly_min_duration_starts_the_event() -> None:
    samples = [(0.0, 0.1), (1.0, 0.9), (2.0, 0.9)]  # above from 1.0, decided at 2.0
    events = feed(TemporalDetector("cam", PARAMS), samples)
    assert [(e.kind, e.started_at, e.at) for e in events] == [("started", 1.0, 2.0)]


def test_cooldown_of_exactly_its_length_allows_a_new_event() -> None:
    params = DetectorParams(
        smoothing_s=0,
        enter_threshold=0.5,
        exit_threshold=0.3,
        min_duration_s=0,
        cooldown_s=2.0,
        baseline=False,
    )
    samples = [(0.0, 0.1), (1.0, 0.9), (2.0, 0.1), (3.0, 0.9), (4.0, 0.9)]
    events = [e for e in feed(TemporalDetector("cam", params), samples) if e.kind != "updated"]
    # Ends at 2.0; at 3.0 still cooling down; at 4.0 exactly 2 s later it may start again.
    assert [(e.kind, e.at) for e in events] == [("started", 1.0), ("ended", 2.0), ("started", 4.0)]


def test_an_aborted_blip_does_not_leak_into_the_next_event() -> None:
    # A 0.5 s blip at 1.0 (peak 1.0) is not an event; the event from 3.0 peaks at 0.8.
    samples = [(0.0, 0.1), (1.0, 1.0), (1.5, 0.1), (3.0, 0.8), (3.5, 0.7), (4.0, 0.8)]
    samples += [(5.0, 0.8), (6.0, 0.1)]
    events = feed(TemporalDetector("cam", PARAMS), samples)
    start = next(e for e in events if e.kind == "started")
    end = next(e for e in events if e.kind == "ended")
    assert start.started_at == 3.0
    assert end.peak_score == 0.8 and end.peak_at == 3.0 and end.peak_ref == 3
    assert end.mean_score == pytest.approx((0.8 + 0.7 + 0.8 + 0.8) / 4)


def test_every_event_gets_its_own_id() -> None:
    samples = square_wave(1.0, 3.0, total=30) + [
        (30 + t, s) for t, s in square_wave(1.0, 3.0, total=10)
    ]
    events = feed(TemporalDetector("cam", PARAMS), samples)
    ids = [e.event_id for e in events if e.kind == "started"]
    assert len(ids) == 2 and len(set(ids)) == 2
    assert {e.event_id for e in events if e.kind == "ended"} == set(ids)


def test_updates_report_a_new_peak_once_it_has_grown_enough() -> None:
    samples = [(0.0, 0.1), (1.0, 0.6), (2.0, 0.6), (3.0, 0.61), (4.0, 0.63), (5.0, 0.64)]
    samples += [(6.0, 0.70)]
    events = feed(TemporalDetector("cam", PARAMS), samples)
    assert [(e.kind, e.peak_score) for e in events] == [
        ("started", 0.6),
        ("updated", 0.63),  # 0.61 was too small a step
        ("updated", 0.70),  # and so was 0.64, measured from the last report
    ]


def test_a_peak_grown_by_exactly_the_step_is_reported() -> None:
    from hazardwatch.detect.detector import PEAK_REPORT_STEP

    step_up = 0.6 + PEAK_REPORT_STEP
    samples = [(0.0, 0.1), (1.0, 0.6), (2.0, 0.6), (3.0, step_up)]
    events = feed(TemporalDetector("cam", PARAMS), samples)
    assert [e.kind for e in events] == ["started", "updated"]


def test_an_event_of_exactly_max_event_s_ends() -> None:
    params = replace(PARAMS, min_duration_s=0.0, max_event_s=30.0, cooldown_s=100.0)
    samples = [(0.0, 0.1)] + [(float(t), 0.9) for t in range(1, 40)]
    events = [e for e in feed(TemporalDetector("cam", params), samples) if e.kind == "ended"]
    assert [(e.end_reason, e.at) for e in events] == [("max_duration", 31.0)]


def test_a_pending_signal_falling_to_exactly_enter_goes_back_to_idle() -> None:
    params = replace(PARAMS, enter_threshold=0.5, exit_threshold=0.25)
    samples = [(0.0, 0.1), (0.5, 0.75)] + [(1.0 + i / 10, 0.5) for i in range(30)]
    assert feed(TemporalDetector("cam", params), samples) == []


def test_per_class_overrides_apply_to_their_class_only() -> None:
    fire = replace(PARAMS, enter_threshold=0.8, exit_threshold=0.7)
    detector = TemporalDetector("cam", PARAMS, channel_params={"fire": fire})
    for i in range(30):
        detector.update(i / 10, {"fire": 0.75, "smoke": 0.75})
    assert detector.active_channels == ["smoke"]
    assert detector.params_for("fire") is fire and detector.params_for("smoke") is PARAMS


def test_channel_params_from_a_bank() -> None:
    bank = PromptBank.from_text(
        """
classes:
  fire: {kind: hazard, prompts: [a fire], enter_threshold: 0.4}
  smoke: {kind: hazard, prompts: [smoke], enter_threshold: 0.3, exit_threshold: 0.05}
  crash: {kind: hazard, prompts: [a crash], exit_threshold: 0.1}
  flood: {kind: hazard, prompts: [a flood]}
  street: {kind: normal, prompts: [a street]}
"""
    )
    base = DetectorParams(enter_threshold=0.2, exit_threshold=0.15)
    out = channel_params(bank, base)
    assert set(out) == {"fire", "smoke", "crash"}
    assert (out["fire"].enter_threshold, out["fire"].exit_threshold) == (0.4, 0.15)
    assert (out["smoke"].enter_threshold, out["smoke"].exit_threshold) == (0.3, 0.05)
    assert (out["crash"].enter_threshold, out["crash"].exit_threshold) == (0.2, 0.1)
    low = channel_params(
        PromptBank.from_text("classes:\n  a: {kind: hazard, prompts: [x], enter_threshold: 0.1}\n"),
        base,
    )
    assert low["a"].exit_threshold == 0.1  # exit never above enter


def test_from_settings_takes_every_field() -> None:
    fields = {
        "rule": "offset",
        "false_alarms_per_day": 3.0,
        "reference_z": 2.5,
        "max_gap_s": 2.0,
        "smoothing_s": 2.0,
        "burst_smoothing_s": 0.5,
        "enter_threshold": 0.3,
        "exit_threshold": 0.2,
        "min_duration_s": 3.0,
        "cooldown_s": 4.0,
        "max_event_s": 50.0,
        "baseline": False,
        "baseline_s": 70.0,
        "normal_margin": 0.3,
        "reference_match": 0.9,
    }
    settings = SimpleNamespace(**fields, max_references=7)
    params = DetectorParams.from_settings(settings)
    assert {k: getattr(params, k) for k in fields} == fields


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"smoothing_s": -1}, "smoothing_s"),
        ({"burst_smoothing_s": -1}, "burst_smoothing_s"),
        ({"min_duration_s": -0.1}, "min_duration_s"),
        ({"cooldown_s": -1}, "cooldown_s"),
        ({"max_event_s": 0}, "max_event_s"),
        ({"baseline_s": 0}, "baseline_s"),
        ({"normal_margin": -0.01}, "normal_margin"),
        ({"reference_match": 0}, "reference_match"),
        ({"reference_match": 1.01}, "reference_match"),
    ],
)
def test_bad_params_are_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DetectorParams(**kwargs)  # type: ignore[arg-type]


def test_params_at_their_bounds_are_accepted() -> None:
    DetectorParams(smoothing_s=0, min_duration_s=0, cooldown_s=0, normal_margin=0)
    DetectorParams(enter_threshold=0.2, exit_threshold=0.2, reference_match=1.0)


# ---------------------------------------------------------------------------- normal band

BAND = CameraNormal(classes={"x": ClassNormal(0.05, 0.1, 0.2)})
BANDED = DetectorParams(
    smoothing_s=0.0,
    enter_threshold=0.2,
    exit_threshold=0.15,
    min_duration_s=1.0,
    cooldown_s=5.0,
    baseline_s=10.0,
    normal_margin=0.1,
)


def test_the_first_sample_is_clamped_into_the_band() -> None:
    high = TemporalDetector("cam", BANDED, normal=BAND)
    high.update(0.0, {"x": 0.9, "y": 0.9})
    assert high.baseline("x") == pytest.approx(0.3)  # band top 0.2 + margin 0.1
    assert high.baseline("y") == 0.9  # no band for y: as before
    assert high.band("x") == (pytest.approx(-0.05), pytest.approx(0.3))
    assert high.band("y") == (-math.inf, math.inf)
    low = TemporalDetector("cam", BANDED, normal=BAND)
    low.update(0.0, {"x": 0.0})
    assert low.baseline("x") == 0.0  # inside the band (0.05 - 0.1 < 0)
    inside = TemporalDetector("cam", BANDED, normal=BAND)
    inside.update(0.0, {"x": 0.15})
    assert inside.baseline("x") == 0.15


def test_a_hazard_in_view_from_the_start_fires() -> None:
    detector = TemporalDetector("cam", BANDED, normal=BAND)
    events = [e for i in range(30) for e in detector.update(i / 10, {"x": 0.6}, ref=i)]
    assert [e.kind for e in events] == ["started"]
    assert events[0].at == pytest.approx(1.1)  # pending from the 2nd sample, 1 s later


def test_the_baseline_never_learns_above_the_band() -> None:
    detector = TemporalDetector("cam", BANDED, normal=BAND)
    detector.update(0.0, {"x": 0.1})
    for i in range(1, 600):  # a 60 s climb from 0.1 to 0.6
        detector.update(i / 10, {"x": 0.1 + i / 600 * 0.5})
    assert detector.baseline("x") <= 0.3 + 1e-12
    assert detector.state("x") == ChannelState.ACTIVE  # the climb fired


def test_the_baseline_follows_drift_inside_the_band() -> None:
    detector = TemporalDetector("cam", BANDED, normal=BAND)
    detector.update(0.0, {"x": 0.1})
    for i in range(1, 3000):
        detector.update(i / 10, {"x": 0.25})
    assert detector.baseline("x") == pytest.approx(0.25, abs=1e-3)
    assert detector.state("x") == ChannelState.IDLE
    for i in range(3000, 6000):
        detector.update(i / 10, {"x": 0.0})
    assert detector.baseline("x") == pytest.approx(0.0, abs=1e-3)  # floor -0.05: not reached


def test_a_low_floor_binds_too() -> None:
    narrow = CameraNormal(classes={"x": ClassNormal(0.3, 0.35, 0.4)})
    detector = TemporalDetector("cam", replace(BANDED, normal_margin=0.0), normal=narrow)
    detector.update(0.0, {"x": 0.0})
    assert detector.baseline("x") == 0.3
    for i in range(1, 3000):
        detector.update(i / 10, {"x": 0.0})
    assert detector.baseline("x") == 0.3


def test_restored_baselines_are_used_and_clamped() -> None:
    state = CameraNormal(classes={"x": ClassNormal(0.05, 0.1, 0.2)}, baselines={"x": 0.9, "y": 0.4})
    detector = TemporalDetector("cam", BANDED, normal=state)
    detector.update(0.0, {"x": 0.0, "y": 0.0, "z": 0.2})
    assert detector.baselines() == {"x": pytest.approx(0.3), "y": 0.4, "z": 0.2}


def test_a_known_normal_sight_gives_no_evidence() -> None:
    detector = TemporalDetector("cam", BANDED)
    detector.update(0.0, {"x": 0.1})
    for i in range(1, 40):
        events = detector.update(i / 10, {"x": 0.9}, normal_similarity=0.95)  # exactly at match
        assert events == []
    assert detector.smoothed("x") == pytest.approx(0.1)  # capped at the baseline
    events = [e for i in range(40, 70) for e in detector.update(i / 10, {"x": 0.9}, None, 0.94)]
    assert [e.kind for e in events] == ["started"]


def test_a_known_normal_sight_does_not_lower_a_score_below_the_baseline() -> None:
    detector = TemporalDetector("cam", BANDED)
    detector.update(0.0, {"x": 0.5})
    detector.update(1.0, {"x": 0.2}, normal_similarity=1.0)
    assert detector.smoothed("x") == 0.2


def test_reconfigure_applies_new_thresholds_and_overrides_and_keeps_state() -> None:
    detector = TemporalDetector("cam", PARAMS)
    for i in range(5):
        detector.update(i / 10, {"fire": 0.6, "smoke": 0.6})
    strict = replace(PARAMS, enter_threshold=0.9, exit_threshold=0.8)
    detector.reconfigure(strict, {"smoke": PARAMS})
    assert detector.params is strict
    assert detector.params_for("fire") is strict and detector.params_for("smoke") is PARAMS
    for i in range(5, 30):
        detector.update(i / 10, {"fire": 0.6, "smoke": 0.6})
    assert detector.active_channels == ["smoke"]  # smoke kept its pending time from before
    detector.reconfigure(strict)
    assert detector.params_for("smoke") is strict  # overrides replaced, not merged


def test_frames_of_the_onset_are_released_once_the_event_starts() -> None:
    import gc
    import weakref

    class Ref:
        pass

    detector = TemporalDetector("cam", PARAMS)
    refs = [Ref() for _ in range(20)]
    watch = [weakref.ref(r) for r in refs]
    values = [0.1] + [0.9] * 19
    values[5] = 1.0  # the peak
    for i, (ref, value) in enumerate(zip(refs, values, strict=True)):
        detector.update(i / 10, {"fire": value}, ref=ref)
    assert detector.active_channels == ["fire"]
    del refs, ref
    gc.collect()
    alive = [i for i, w in enumerate(watch) if w() is not None]
    assert alive == [5]  # only the peak frame is kept


def test_channels_says_what_the_detector_follows() -> None:
    assert TemporalDetector("cam", PARAMS).channels is None
    assert TemporalDetector("cam", PARAMS, channels=["a", "b"]).channels == frozenset({"a", "b"})


def test_params_and_events_are_immutable_records() -> None:

    params = DetectorParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.enter_threshold = 0.5  # type: ignore[misc]
    assert not hasattr(params, "__dict__")  # slots: many detectors, small records
    assert {params: 1}[DetectorParams()] == 1


def test_duration_of_an_open_and_of_an_ended_event() -> None:
    events = feed(TemporalDetector("cam", PARAMS), square_wave(2.0, 6.0))
    started = next(e for e in events if e.kind == "started")
    ended = next(e for e in events if e.kind == "ended")
    assert started.duration_s == pytest.approx(1.0)  # open: up to when it was decided
    assert ended.duration_s == pytest.approx(4.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ended.peak_score = 0.0  # type: ignore[misc]


def test_a_second_event_has_its_own_peak_and_mean() -> None:
    first = [(i / 10, 0.95 if 10 <= i < 40 else 0.1) for i in range(100)]
    second = [(10 + i / 10, 0.7 if 10 <= i < 40 else 0.1) for i in range(100)]
    events = feed(TemporalDetector("cam", PARAMS), first + second)
    ended = [e for e in events if e.kind == "ended"]
    assert len(ended) == 2
    assert ended[0].peak_score == 0.95 and ended[0].mean_score == pytest.approx(0.95)
    assert ended[1].peak_score == 0.7 and ended[1].mean_score == pytest.approx(0.7)
    assert ended[1].peak_at >= 11.0


def test_a_flush_never_ends_an_event_before_its_last_sample() -> None:
    detector = TemporalDetector("cam", PARAMS)
    feed(detector, [(i / 10, 0.9) for i in range(30)])
    (late,) = detector.flush(10.0)
    assert late.ended_at == 10.0
    detector = TemporalDetector("cam", PARAMS)
    feed(detector, [(i / 10, 0.9) for i in range(30)])
    (early,) = detector.flush(1.0)  # a clock behind the samples
    assert early.ended_at == pytest.approx(2.9)


def _calibrated(threshold: float = 4.0, burst: float | None = None) -> CameraNormal:
    return CameraNormal(
        classes={"x": ClassNormal(0.01, 0.02, 0.05, noise=0.5, threshold=threshold, burst=burst)}
    )


def test_a_burst_past_its_limit_opens_an_event_at_once_which_then_drains() -> None:
    """A second at 0.9 gathers (z − k) · 1 s of evidence, short of a threshold of 20; with a
    burst limit of 8 it opens on the first sample past the limit and ends once the
    statistic, raised to the threshold, has drained at k per second."""
    series = [(i / 10, 0.9 if 100 <= i < 110 else 0.02) for i in range(400)]
    params = DetectorParams(smoothing_s=1.0, burst_smoothing_s=0.25, cooldown_s=10.0)
    without = TemporalDetector("cam", params, normal=_calibrated(threshold=20.0))
    assert not [e for e in _feed_x(without, series) if e.kind == "started"]
    detector = TemporalDetector("cam", params, normal=_calibrated(threshold=20.0, burst=8.0))
    events = _feed_x(detector, series)
    (started,) = [e for e in events if e.kind == "started"]
    (ended,) = [e for e in events if e.kind == "ended"]
    assert 10.0 < started.at <= 10.3 and started.started_at == pytest.approx(10.0)
    assert started.threshold == 8.0 and started.statistic is not None
    assert started.statistic >= 8.0
    assert ended.end_reason == "below_exit"
    assert 11.0 + 20.0 / params.reference_z <= ended.at <= 11.0 + 20.0 / params.reference_z + 5
    # The same burst again, within the cooldown and after it: only the second opens.
    again = TemporalDetector("cam", params, normal=_calibrated(threshold=20.0, burst=8.0))
    _feed_x(again, [(t, p) for t, p in series if t <= ended.at])
    assert again.state("x") == "cooldown"

    def burst_at(start: float) -> list[tuple[float, float]]:
        return [(start + i / 10, 0.9 if 10 <= i < 20 else 0.02) for i in range(40)]

    assert not [e for e in _feed_x(again, burst_at(ended.at + 0.1)) if e.kind == "started"]
    later = burst_at(ended.at + params.cooldown_s + 1.0)
    assert [e for e in _feed_x(again, later) if e.kind == "started"]


def _feed_x(detector: TemporalDetector, samples: list[tuple[float, float]]) -> list[DetectionEvent]:
    return [e for t, p in samples for e in detector.update(t, {"x": p})]


def test_progress_is_the_nearer_of_the_two_limits() -> None:
    params = DetectorParams(smoothing_s=1.0, burst_smoothing_s=0.0)
    detector = TemporalDetector("cam", params, normal=_calibrated(threshold=20.0, burst=100.0))
    detector.update(0.0, {"x": 0.02})
    detector.update(0.1, {"x": 0.5})
    explained = detector.explain("x")
    assert explained is not None
    burst_z = (logit(0.5) - logit(0.02)) / 0.5
    assert explained["burst_z"] == pytest.approx(burst_z)
    assert detector.progress("x") == pytest.approx(burst_z / 100.0)  # the CUSUM is at 0
    assert detector.signal("x") == detector.progress("x")


def test_an_evidence_event_ends_when_its_evidence_drains_and_waits_out_its_cooldown() -> None:
    params = DetectorParams(smoothing_s=0.0, cooldown_s=5.0)
    detector = TemporalDetector("cam", params, normal=_calibrated())
    events = []
    for i in range(200):  # 20 s at 10 fps: 2 s of 0.6, 3 s normal, 2 s of 0.6, then normal
        t = i / 10
        p = 0.6 if (10 <= i < 30) or (60 <= i < 80) else 0.02
        events += detector.update(t, {"x": p})
    kinds = [(e.kind, round(e.at, 1)) for e in events if e.kind != "updated"]
    assert kinds[0][0] == "started" and kinds[1][0] == "ended"
    ended_at = kinds[1][1]
    assert 3.0 <= ended_at <= 5.0  # drained at reference_z a second after 0.6 went
    # The second burst starts within the cooldown: it opens only once the cooldown is over.
    second = [e for e in events if e.kind == "started"][1]
    assert second.at >= ended_at + params.cooldown_s
    assert second.started_at >= ended_at  # never before the last event ended


def test_an_events_peak_and_mean_come_from_its_own_run_of_evidence() -> None:
    """A blip that never reaches the threshold, normal again, then a run that does: the
    event's peak is its own run's, found before the decision, not the blip's."""
    params = DetectorParams(smoothing_s=0.0)
    detector = TemporalDetector("cam", params, normal=_calibrated(threshold=6.0))
    series = [0.02] * 10 + [0.9] * 2 + [0.02] * 30 + [0.5] * 2 + [0.3] * 40
    events = []
    for i, p in enumerate(series):
        events += detector.update(i / 10, {"x": p}, ref=i)
    started = [e for e in events if e.kind == "started"]
    assert len(started) == 1
    event = started[0]
    assert event.peak_score == pytest.approx(0.5) and event.peak_ref in (42, 43)
    assert event.started_at == pytest.approx(4.2)
    assert 0.3 < event.mean_score < 0.5


def test_while_an_evidence_event_is_open_the_baseline_holds_and_the_peak_is_reported() -> None:
    params = DetectorParams(smoothing_s=0.0, baseline_s=5.0, max_event_s=3.0)
    detector = TemporalDetector("cam", params, normal=_calibrated())
    detector.update(0.0, {"x": 0.02})
    assert detector.baselines() == {"x": pytest.approx(0.02)}  # a probability, not a logit
    events = []
    for i, p in enumerate([0.03, 0.04, 0.6, 0.7, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9]):
        events += detector.update(1.0 + i / 2, {"x": p})
    started = next(e for e in events if e.kind == "started")
    before = detector.baseline("x")
    for i in range(6):
        events += detector.update(6.0 + i / 2, {"x": 0.9})
    assert detector.baseline("x") == before  # an open event teaches the baseline nothing
    assert detector.baseline("x") <= 0.05 + 1e-12  # never above the normal band
    assert any(e.kind == "updated" and e.peak_score > started.peak_score for e in events)
    ended = [e for e in events if e.kind == "ended"]
    assert ended and ended[0].end_reason == "max_duration"


def test_explain_says_the_channels_decision() -> None:
    detector = TemporalDetector("cam", DetectorParams(smoothing_s=0.0), normal=_calibrated())
    assert detector.explain("x") is None
    detector.update(0.0, {"x": 0.02})
    detector.update(1.0, {"x": 0.2})
    explained = detector.explain("x")
    assert explained is not None
    assert explained["state"] == "idle" and explained["smoothed"] == pytest.approx(0.2)
    assert explained["statistic"] == pytest.approx(explained["progress"] * 4.0)
    assert explained["z"] == pytest.approx((logit(0.2) - logit(0.02)) / 0.5)
    offset = TemporalDetector("cam", DetectorParams(enter_threshold=0.0, exit_threshold=0.0))
    offset.update(0.0, {"x": 0.3})
    assert offset.progress("x") is None  # no fraction of a threshold of 0
    assert "statistic" not in (offset.explain("x") or {})


def test_rule_of_a_class() -> None:
    band = ClassNormal(0.01, 0.02, 0.05, noise=0.5, threshold=4.0)
    assert rule_of(DetectorParams(), band) == "evidence"
    assert rule_of(DetectorParams(), None) == "offset"
    assert rule_of(DetectorParams(), ClassNormal(0.01, 0.02, 0.05)) == "offset"  # a prior
    assert rule_of(DetectorParams(rule="offset"), band) == "offset"
