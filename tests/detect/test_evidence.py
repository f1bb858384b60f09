"""The evidence statistic on its own (detect/evidence.py)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from hazardwatch.detect.detector import DetectorParams
from hazardwatch.detect.evidence import Evidence, logit

BAND = (logit(0.01), logit(0.1))
DEFAULTS = DetectorParams().evidence


def test_logit_is_finite_at_the_ends_of_a_probability() -> None:
    assert math.isfinite(logit(0.0)) and math.isfinite(logit(1.0))
    assert logit(1.0) == pytest.approx(-logit(0.0)) and logit(0.5) == 0.0


@pytest.mark.parametrize(
    "bad",
    [
        {"smoothing_s": -1.0},
        {"baseline_s": 0.0},
        {"max_gap_s": 0.0},
        {"reference_z": -0.1},
        {"burst_smoothing_s": -0.1},
    ],
)
def test_params_refuse_what_has_no_meaning(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        replace(DEFAULTS, **bad)


def test_params_accept_their_edges() -> None:
    replace(DEFAULTS, smoothing_s=0.0, reference_z=0.5)
    replace(DEFAULTS, reference_z=0.0, baseline_s=1e-3, max_gap_s=1e-3)


def test_the_statistic_counts_seconds_of_excess_and_its_run_starts_where_it_left_zero() -> None:
    """z held at reference + 0.5 for 6 s: the statistic climbs by 0.5 a second through 1
    and beyond, and the run keeps the time it first rose above zero."""
    params = replace(DEFAULTS, smoothing_s=0.0, reference_z=2.0)
    noise = 0.5
    evidence = Evidence(params, 0.0, 0.05, BAND, noise)
    level = logit(0.05) + 2.5 * noise  # z = 2.5
    p = 1.0 / (1.0 + math.exp(-level))
    evidence.step(1.0, 0.05, learn=False)  # z = 0: nothing
    assert evidence.statistic == 0.0 and evidence.run_start == 0.0
    for i in range(3, 15):  # every half second from 1.5 s to 7 s
        evidence.step(i / 2, p, learn=False)
    assert evidence.statistic == pytest.approx(0.5 * 6.0)
    assert evidence.run_start == 1.5  # the first sample with evidence, not a later one


def test_a_gap_counts_at_most_max_gap_s_and_the_cap_holds_it() -> None:
    params = replace(DEFAULTS, smoothing_s=0.0, reference_z=2.0, max_gap_s=1.0)
    evidence = Evidence(params, 0.0, 0.05, BAND, 0.5)
    level = logit(0.05) + 3.0 * 0.5  # z = 3
    p = 1.0 / (1.0 + math.exp(-level))
    evidence.step(10.0, p, learn=False)  # ten seconds later: counts one
    assert evidence.statistic == pytest.approx(1.0)
    evidence.step(11.0, p, learn=False, cap=1.5)
    assert evidence.statistic == 1.5


def test_smoothing_follows_its_time_constant_and_the_baseline_learns_only_when_told() -> None:
    params = replace(DEFAULTS, smoothing_s=2.0, baseline_s=10.0)
    evidence = Evidence(params, 0.0, 0.02, BAND, 0.5)
    evidence.step(1.0, 0.08, learn=False)
    smoothed = 0.02 + (1 - math.exp(-0.5)) * 0.06  # one second of a 2-s time constant
    assert evidence.smoothed == pytest.approx(smoothed)
    assert evidence.baseline == logit(0.02)  # an event is open: not learned
    evidence.step(2.0, 0.08, learn=True)
    smoothed += (1 - math.exp(-0.5)) * (0.08 - smoothed)
    learned = logit(0.02) + (1 - math.exp(-0.1)) * (logit(smoothed) - logit(0.02))
    assert evidence.baseline == pytest.approx(learned)
    evidence.step(3.0, 0.9, learn=True)
    assert evidence.baseline <= BAND[1]  # never above the normal band


def test_the_burst_z_follows_the_fast_smoothing_against_the_same_baseline() -> None:
    params = replace(DEFAULTS, smoothing_s=1.0, burst_smoothing_s=0.25)
    evidence = Evidence(params, 0.0, 0.02, BAND, 0.5)
    evidence.step(0.25, 0.9)  # a quarter second: the fast average is 1 − 1/e of the way
    fast = 0.02 + (1.0 - math.exp(-1.0)) * 0.88
    slow = 0.02 + (1.0 - math.exp(-0.25)) * 0.88
    assert evidence.fast == pytest.approx(fast) and evidence.smoothed == pytest.approx(slow)
    baseline = logit(0.02)  # it learns only after both z were taken against it
    assert evidence.burst_z == pytest.approx((logit(fast) - baseline) / 0.5)
    assert evidence.z == pytest.approx((logit(slow) - baseline) / 0.5)
    assert evidence.burst_z > evidence.z
    raw = Evidence(replace(params, burst_smoothing_s=0.0), 0.0, 0.02, BAND, 0.5)
    raw.step(0.1, 0.9)
    assert raw.fast == 0.9  # no fast smoothing: the sample itself


def test_hold_raises_the_statistic_and_starts_a_run_only_from_zero() -> None:
    evidence = Evidence(DEFAULTS, 0.0, 0.02, BAND, 0.5)
    evidence.step(1.0, 0.02)
    assert evidence.statistic == 0.0
    evidence.hold(1.0, 6.0)
    assert evidence.statistic == 6.0 and evidence.run_start == 1.0
    evidence.hold(2.0, 3.0)  # never lowers, and the run goes on from where it began
    assert evidence.statistic == 6.0 and evidence.run_start == 1.0


def test_before_any_step_both_z_are_the_first_samples_and_probabilities_are_clamped() -> None:
    """The detector explains a channel after its first sample, before any step."""
    evidence = Evidence(DEFAULTS, 0.0, 0.5, BAND, 0.5)
    first = (logit(0.5) - logit(0.1)) / 0.5  # the baseline clamped to the band's top
    assert evidence.z == pytest.approx(first) and evidence.burst_z == pytest.approx(first)
    evidence.step(1.0, 1.5)  # a score outside 0..1 (a bad channel) counts as 1
    assert 0.5 < evidence.smoothed <= 1.0 and 0.5 < evidence.fast <= 1.0
    evidence.step(100.0, -2.0)
    assert 0.0 <= evidence.smoothed < 0.5 and 0.0 <= evidence.fast < 0.5
