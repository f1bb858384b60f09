"""Thresholds for a false-alarm budget (detect/thresholds.py), piece by piece."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hazardwatch.detect.detector import DetectorParams
from hazardwatch.detect.evidence import logit
from hazardwatch.detect.thresholds import (
    MIN_BURST_Z,
    MIN_EXCURSIONS,
    MIN_THRESHOLD,
    NEAR,
    REPLAY_FPS,
    REPLAY_SAFETY,
    Fit,
    band_of,
    chi2_lower,
    excursion_peaks,
    fit_class,
    own_fps,
    replay,
    tail_threshold,
)

PARAMS = DetectorParams().evidence


def test_tail_threshold_solves_the_exponential_tail_for_the_budget() -> None:
    peaks = np.arange(1.0, 21.0)  # 20 excursions; median 10.5, ten above it
    u = 10.5
    excess = peaks[peaks > u] - u  # mean 5.0
    beta = 5.0 * 2 * 10 / chi2_lower(20)  # its 95 % upper bound
    rate = 10 / 3600.0 * 86_400.0  # ten peaks above u an hour: 240 a day
    expected = u + beta * math.log(rate / 0.5)
    assert excess.mean() == 5.0
    assert tail_threshold(peaks, 3600.0, 0.5) == pytest.approx(expected)
    # A budget above the rate of peaks above the median: the median itself.
    assert tail_threshold(peaks, 3600.0, 1000.0) == u
    assert tail_threshold(peaks[: MIN_EXCURSIONS - 1], 3600.0, 0.5) is None
    assert tail_threshold(peaks, 0.0, 0.5) is None
    assert tail_threshold(np.full(20, 3.0), 3600.0, 0.5) is None  # nothing above the median
    # The edges: exactly five above the median is enough, and any positive duration counts.
    assert tail_threshold(np.arange(1.0, 11.0), 3600.0, 0.5) is not None
    assert tail_threshold(peaks, 0.5, 0.5) is not None


def test_chi2_lower_is_the_5th_percentile() -> None:
    # Reference values of the chi-squared distribution's 5th percentile.
    assert chi2_lower(20) == pytest.approx(10.851, rel=0.01)
    assert chi2_lower(100) == pytest.approx(77.929, rel=0.01)


def test_band_of_weighs_every_run_the_same_and_one_run_is_its_own() -> None:
    ramp = np.linspace(0.0, 1.0, 1001)
    low, level, high = band_of([ramp, np.full(10, 0.2)])
    assert low < 0.15 and level == pytest.approx(0.2, abs=0.01) and high > 0.8
    rng = np.random.default_rng(1)
    x = rng.random(997)
    lo, hi = np.quantile(x, (0.05, 0.95))
    assert band_of([x]) == pytest.approx((lo, float(np.median(x)), hi))


def test_excursion_peaks_and_replay() -> None:
    stats = np.array([0.0, 1.0, 3.0, 0.0, 0.0, 2.0, 0.0, 5.0])
    assert excursion_peaks(stats).tolist() == [3.0, 2.0, 5.0]
    assert excursion_peaks(np.zeros(4)).size == 0
    one_stat, one_z, _ = replay([0.5], [0.0], PARAMS, (logit(0.1), logit(0.2)), 0.5)
    assert one_stat.tolist() == [0.0]
    assert one_z[0] == pytest.approx((logit(0.5) - logit(0.2)) / 0.5)  # the band's top
    empty_stat, empty_z, _ = replay([], [], PARAMS, (0.0, 1.0), 1.0)
    assert empty_stat.size == 0 and empty_z.size == 0


def test_a_transient_in_the_footage_sets_the_floor_whatever_the_replay() -> None:
    """Normal footage with one 3-s transient to 0.6: too few excursions for a tail, so the
    threshold is three times the highest statistic any replay reached — at least 1.5 times
    what the footage gives replayed at 5 fps, reversed."""
    rng = np.random.default_rng(5)
    values = np.clip(0.05 + 0.005 * rng.standard_normal(1200), 0.001, 1.0)
    values[600:630] = 0.6
    times = np.arange(1200) / 10.0
    fit = fit_class([(values, times)], PARAMS, 0.1)
    band = (logit(fit.low), logit(fit.high))
    slow = replay(values[::-1], np.arange(1200) / 5.0, PARAMS, band, fit.noise)[0].max()
    assert slow > MIN_THRESHOLD
    assert fit.threshold >= REPLAY_SAFETY * slow
    assert fit.low < 0.05 < fit.high < 0.1  # the transient is 2.5 % of the footage
    # The burst limit is held above the transient's fast excess at any rate in the same way.
    fast = replay(values, np.arange(1200) / 30.0, PARAMS, band, fit.noise)[2].max()
    assert fast > MIN_BURST_Z
    assert fit.burst >= REPLAY_SAFETY * fast


def test_the_class_budget_is_shared_between_sustained_evidence_and_bursts() -> None:
    """White noise, many excursions: both limits come from their tails. Half the class's
    budget each: fitting for the whole budget gives each tail's value at half of it."""
    rng = np.random.default_rng(3)
    values = 1.0 / (1.0 + np.exp(-(-3.0 + 0.5 * rng.standard_normal(6000))))
    times = np.arange(6000) / 10.0
    fit = fit_class([(values, times)], PARAMS, 2.0, replay_fps=())
    stats, _, bursts = replay(values, times, PARAMS, (logit(fit.low), logit(fit.high)), fit.noise)
    k = PARAMS.reference_z
    peaks = excursion_peaks(np.where(bursts > k, bursts - k, 0.0)) + k
    seconds = float(times[-1])
    tail = tail_threshold(excursion_peaks(stats), seconds, 1.0)
    burst_tail = tail_threshold(peaks, seconds, 1.0)
    assert tail is not None and burst_tail is not None
    assert fit.threshold == pytest.approx(max(tail, REPLAY_SAFETY * stats.max(), MIN_THRESHOLD))
    assert fit.burst == pytest.approx(max(burst_tail, REPLAY_SAFETY * bursts.max(), MIN_BURST_Z))
    whole = tail_threshold(peaks, seconds, 2.0)
    assert whole is not None and whole < fit.burst  # half the budget is the stricter limit


def slow_noise() -> np.ndarray:
    """Slow-moving noise (AR(1), about 2 s memory at 10 fps) around probability 0.05."""
    rng = np.random.default_rng(3)
    x = np.zeros(6000)
    for i in range(1, x.size):
        x[i] = 0.95 * x[i - 1] + 0.3 * rng.standard_normal()
    return 1.0 / (1.0 + np.exp(-(-3.0 + x)))


def rate_tails(values: np.ndarray, fit: Fit) -> dict[float, float | None]:
    """Each replay rate's own tail, forward and reversed, for 0.05 a day."""
    band = (logit(fit.low), logit(fit.high))
    index = np.arange(values.size)
    tails = {}
    for fps in REPLAY_FPS:
        stats = [replay(s, index / fps, PARAMS, band, fit.noise)[0] for s in (values, values[::-1])]
        peaks = np.concatenate([excursion_peaks(s) for s in stats])
        tails[fps] = tail_threshold(peaks, 2 * (values.size - 1) / fps, 0.05)
    return tails


def test_the_budget_holds_at_rates_near_the_footages_not_only_on_average() -> None:
    """At 10 fps: replayed at 5 fps the excursions last twice as long and peak higher, so
    that rate's own tail is above the tail pooled over all rates, and decides."""
    values = slow_noise()
    times = np.arange(values.size) / 10.0
    fit = fit_class([(values, times)], PARAMS, 0.1)
    pooled = fit_class([(values, times)], PARAMS, 0.1, each_rate=False)
    tails = rate_tails(values, fit)
    near = [tails[fps] for fps in (5.0, 7.5, 10.0, 15.0, 20.0)]
    assert None not in near
    assert fit.threshold == pytest.approx(max(near))  # type: ignore[type-var]
    assert fit.threshold == pytest.approx(tails[5.0])  # the slowest near rate's tail
    assert pooled.threshold < fit.threshold  # pooled alone, 5 fps would exceed the budget
    assert (fit.low, fit.noise, fit.burst) == (pooled.low, pooled.noise, pooled.burst)


def test_rates_far_from_the_footages_keep_the_pooled_tail() -> None:
    """The same noise at 30 fps: 5 fps is a sixfold stretch, beyond NEAR; its own tail
    (the highest) does not set the threshold, and no near rate's tail exceeds the pooled."""
    values = slow_noise()
    times = np.arange(values.size) / 30.0
    fit = fit_class([(values, times)], PARAMS, 0.1)
    pooled = fit_class([(values, times)], PARAMS, 0.1, each_rate=False)
    tails = rate_tails(values, fit)
    assert NEAR == 2.0
    assert tails[5.0] is not None and tails[5.0] > fit.threshold
    assert fit.threshold == pooled.threshold
    assert all(tails[fps] is None or tails[fps] < fit.threshold for fps in (15.0, 20.0, 30.0))


def test_own_fps_is_one_over_the_median_step_with_repeated_times_left_out() -> None:
    times = np.repeat(np.arange(10) / 10.0, 3)  # each time three times: most steps are 0
    assert own_fps([(np.zeros(30), times)]) == pytest.approx(10.0)
    jittered = np.cumsum(np.r_[0.0, np.full(99, 1 / 15.0), [0.5]])  # one late frame
    assert own_fps([(np.zeros(101), jittered)]) == pytest.approx(15.0)


def test_the_floors_are_the_documented_ones() -> None:
    """docs/detection.md states them: 1.5 x the replays' highest, at least 4 z·s and a
    burst z of 5, and the rates near the footage's within a factor of two."""
    assert (REPLAY_SAFETY, MIN_THRESHOLD, MIN_BURST_Z, NEAR) == (1.5, 4.0, 5.0, 2.0)


def test_fit_class_needs_footage_over_some_time() -> None:
    with pytest.raises(ValueError, match="two finite samples"):
        fit_class([([0.1, np.nan], [0.0, 1.0]), ([0.1, 0.2], [1.0, 1.0])], PARAMS, 1.0)


def test_without_a_tail_the_threshold_is_three_times_the_replays_highest() -> None:
    rng = np.random.default_rng(8)
    values = np.clip(0.05 + 0.005 * rng.standard_normal(600), 0.001, 1.0)
    values[300:315] = 0.6  # with its smoothed decay, still above the band's top
    times = np.arange(600) / 10.0
    fit = fit_class([(values, times)], PARAMS, 0.1, replay_fps=())  # too few excursions
    band = (logit(fit.low), logit(fit.high))
    highest = replay(values, times, PARAMS, band, fit.noise)[0].max()
    assert highest > MIN_THRESHOLD
    assert fit.threshold == pytest.approx(3.0 * highest)
    fast = replay(values, times, PARAMS, band, fit.noise)[2].max()
    assert fit.burst == pytest.approx(max(3.0 * fast, MIN_BURST_Z))


def test_a_fit_is_the_same_on_clock_times_as_on_times_from_zero() -> None:
    """History calibration passes epoch seconds: only differences of time may count."""
    rng = np.random.default_rng(9)
    values = np.clip(0.05 + 0.01 * rng.standard_normal(3000), 0.001, 1.0)
    times = np.arange(3000) / 10.0
    on_clock = fit_class([(values, times + 1.7e9)], PARAMS, 0.1)
    from_zero = fit_class([(values, times)], PARAMS, 0.1)
    assert on_clock.threshold == pytest.approx(from_zero.threshold, rel=1e-4)  # float rounding
    assert on_clock.noise == pytest.approx(from_zero.noise, rel=1e-4)
    # Where the tails, not the floors, decide (their rates are counts over durations).
    slow = slow_noise()
    times = np.arange(slow.size) / 10.0
    tail_on_clock = fit_class([(slow, times + 1.7e9)], PARAMS, 0.1, replay_fps=(30.0,))
    tail_from_zero = fit_class([(slow, times)], PARAMS, 0.1, replay_fps=(30.0,))
    band = (logit(tail_from_zero.low), logit(tail_from_zero.high))
    highest = replay(slow, times, PARAMS, band, tail_from_zero.noise)[0].max()
    assert tail_from_zero.threshold > max(REPLAY_SAFETY * highest, MIN_THRESHOLD)
    assert tail_on_clock.threshold == pytest.approx(tail_from_zero.threshold, rel=1e-4)


def test_a_run_whose_first_samples_share_a_time_is_kept() -> None:
    times = np.r_[0.0, np.arange(99) / 10.0]  # the first time twice
    fit = fit_class([(np.full(100, 0.05), times)], PARAMS, 1.0)
    assert fit.level == pytest.approx(0.05)


def test_two_samples_are_enough_and_nan_is_left_out_of_a_band() -> None:
    fit = fit_class([([0.05, 0.06], [0.0, 1.0])], PARAMS, 1.0)
    assert 0.05 <= fit.low <= fit.high <= 0.06
    assert band_of([np.array([0.1, np.nan, 0.3])]) == pytest.approx((0.11, 0.2, 0.29))
