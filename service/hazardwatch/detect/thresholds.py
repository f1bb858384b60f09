"""Thresholds for a false-alarm budget, from a camera's own normal footage.

Event-level calibration: the calibration footage is replayed through the detector's own
statistic (`Evidence`, no threshold), and the threshold of each class is set where the
statistic's excursions, extrapolated from minutes to a day, would cross it at most the
class's share of `false_alarms_per_day`.

- **Noise.** `noise` is the scale of the residual (level − baseline) on the footage, from
  its upper half (95th percentile − median) / 1.645: what the statistic calls one unit.
- **Extrapolation.** Each excursion of the statistic above zero has a peak. For a CUSUM
  with negative drift the peaks' tail is exponential (Siegmund; SPOT's generalised Pareto
  tail with shape 0), so the rate of peaks above h is λ_u · exp(−(h − u) / β), with u the
  median peak, λ_u the rate of peaks above u, and β their mean excess; the peaks come from
  the footage at its own rate and from the replays below (minutes of footage alone hold
  too few excursions to fit), their total duration the denominator. h is solved for the
  class's budget with β replaced by its one-sided 95 % upper confidence bound (exact for
  an exponential: 2mβ / χ²₀.₀₅(2m)), so a short calibration buys a higher threshold, not
  an optimistic one.
- **Each rate near the footage's own.** The pooled tail is an average over the rates, and
  a slower replay's excursions last longer and peak higher (the statistic integrates
  seconds), so the threshold is also at least the own tail of the footage's rate and of
  every replay rate within a factor `NEAR` (2) of it, wherever that rate alone has enough
  excursions to fit one: the budget holds at the camera's rate and at half or twice it,
  not only on average. (Scene 005's `crash` calibrated at 10 fps: 6.8 from the pooled
  tail, 12.3 from 5 fps alone; in 24 bootstrapped camera-hours at 5 fps it raised 37
  events under 6.8 and 1 under 12.3, `bench/false_alarm_rate.py`.) Rates further off
  keep the pooled tail and the floors: one rate's tail rests on 10–20 long excursions,
  and the maximum of many such fits mostly measures their scatter (at a 30-fps
  calibration, crash's tails from 5 to 20 fps were 18, 27, 29, 35 and 32, in no order of
  the stretch).
- **Safety floor.** Minutes of footage cannot show a day's rarest normal moments, and the
  same footage may arrive at another frame rate. The same footage is therefore also
  replayed at every frame rate from 5 to 30 fps, forward and reversed, and the threshold
  is at least `REPLAY_SAFETY` × the highest statistic any replay reached: a calibration
  never alarms on what it saw. It is also at least `MIN_THRESHOLD`, and a calibration
  with too few excursions to fit a tail (under `MIN_EXCURSIONS`) gets
  `SHORT_CALIBRATION_SAFETY` × the replay maximum instead of a fitted tail.

- **Bursts.** The burst limit (`Evidence.burst_z`, a single fast-smoothed observation in
  the same noise units) is fitted the same way on the clusters of `burst_z` above the
  reference (their peaks' exponential tail, β's upper bound, the same replays), with its
  floor at `REPLAY_SAFETY` × the highest `burst_z` any replay reached and at least
  `MIN_BURST_Z`.

The budget is per camera; each hazard class gets an equal share, split equally between its
two ways of opening an event (sustained evidence and a burst).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from hazardwatch.detect.evidence import MIN_NOISE, Evidence, EvidenceParams, logit

DAY_S = 86_400.0
REPLAY_FPS = (5.0, 7.5, 10.0, 15.0, 20.0, 30.0)
REPLAY_SAFETY = 1.5
MIN_THRESHOLD = 4.0
MIN_BURST_Z = 5.0
MIN_EXCURSIONS = 10
SHORT_CALIBRATION_SAFETY = 3.0
NEAR = 2.0  # replay rates within this factor of the footage's own have their own tail
BAND_QUANTILES = (0.05, 0.95)
Z95 = 1.6448536269514722
Run = tuple[npt.ArrayLike, npt.ArrayLike]  # (probabilities, times in seconds)


@dataclass(frozen=True, slots=True)
class Fit:
    """What one class's calibration found (`normal.calibrate` stores it as a ClassNormal)."""

    low: float  # band of the smoothed probability: 5th percentile, median, 95th
    level: float
    high: float
    noise: float  # residual scale, logit units
    threshold: float  # z·s
    burst: float  # z


def band_of(runs: Sequence[npt.ArrayLike]) -> tuple[float, float, float]:
    """5th percentile, median and 95th of smoothed probabilities; several runs (cameras)
    weigh the same, each reduced to its 101 percentiles first."""
    grid = np.linspace(0.0, 1.0, 101)
    profiles = []
    for run in runs:
        x = np.asarray(run, np.float64)
        x = x[np.isfinite(x)]
        if x.size:
            profiles.append(x if len(runs) == 1 else np.quantile(x, grid))
    pooled = np.concatenate(profiles)
    lo, hi = np.quantile(pooled, BAND_QUANTILES)
    return float(lo), float(np.median(pooled)), float(hi)


def replay(
    p: npt.ArrayLike,
    times: npt.ArrayLike,
    params: EvidenceParams,
    band: tuple[float, float],
    noise: float,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The statistic, the residual z and the burst z at every sample, as the detector
    computes them with no threshold (no event ever opens, the baseline always learns)."""
    values = np.asarray(p, np.float64)
    t = np.asarray(times, np.float64)
    stats, zs, bursts = np.zeros(values.size), np.zeros(values.size), np.zeros(values.size)
    if values.size == 0:
        return stats, zs, bursts
    evidence = Evidence(params, float(t[0]), float(values[0]), band, noise)
    zs[0] = bursts[0] = evidence.z
    for i in range(1, values.size):
        stats[i] = evidence.step(float(t[i]), float(values[i]))
        zs[i], bursts[i] = evidence.z, evidence.burst_z
    return stats, zs, bursts


def residual_noise(runs: Sequence[Run], params: EvidenceParams, band: tuple[float, float]) -> float:
    """The residual's upper-half scale (logit units) over the runs at their own rates."""
    residual = np.concatenate([replay(v, t, params, band, 1.0)[1] for v, t in runs])
    median = float(np.median(residual))
    return max((float(np.quantile(residual, 0.95)) - median) / Z95, 0.0)


def excursion_peaks(stats: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The peak of every run of the statistic above zero."""
    s = np.asarray(stats, np.float64)
    positive = s > 0
    if not positive.any():
        return np.zeros(0)
    edges = np.diff(np.concatenate([[0], positive.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return np.array([s[a:b].max() for a, b in zip(starts, ends, strict=True)])


def tail_threshold(peaks: npt.ArrayLike, seconds: float, per_day: float) -> float | None:
    """The threshold whose crossing rate the exponential tail of the peaks puts at `per_day`
    (None: too few excursions to fit one).

    Peaks above their median u are fitted with an exponential excess of mean β (its 95 %
    upper confidence bound, exact for an exponential: 2mβ / χ²₀.₀₅(2m)); their rate λ_u
    extrapolates as λ_u · exp(−(h − u) / β) peaks above h per second.
    """
    x = np.sort(np.asarray(peaks, np.float64))
    if x.size < MIN_EXCURSIONS or seconds <= 0:
        return None
    u = float(np.median(x))
    excess = x[x > u] - u
    m = int(excess.size)
    if m < MIN_EXCURSIONS // 2:
        return None
    beta = float(excess.mean()) * 2.0 * m / chi2_lower(2 * m)
    per_day_above_u = m / seconds * DAY_S
    return u + beta * math.log(per_day_above_u / per_day) if per_day_above_u > per_day else u


def chi2_lower(dof: int, z: float = -Z95) -> float:
    """The chi-squared quantile at the normal deviate z (Wilson–Hilferty)."""
    k = 2.0 / (9.0 * dof)
    return float(dof * max(1.0 - k + z * math.sqrt(k), 1e-6) ** 3)


def fit_class(
    runs: Sequence[Run],
    params: EvidenceParams,
    per_day: float,
    replay_fps: Sequence[float] = REPLAY_FPS,
    each_rate: bool = True,
) -> Fit:
    """Band, noise and threshold of one class from its probabilities on normal footage:
    one run (values, times) for one camera's calibration, several (other cameras) for a
    prior. `each_rate=False` leaves out each rate's own tail (the method before it, for
    `bench/false_alarm_rate.py`)."""
    clean: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []
    for values, times in runs:
        v, t = np.asarray(values, np.float64), np.asarray(times, np.float64)
        keep = np.isfinite(v) & np.isfinite(t)
        if keep.sum() >= 2 and t[keep][-1] > t[keep][0]:
            clean.append((v[keep], t[keep]))
    if not clean:
        raise ValueError("at least two finite samples over some time are needed to calibrate")
    low, level, high = band_of([smooth(v, t, params.smoothing_s) for v, t in clean])
    band = (logit(low), logit(high))
    noise = max(residual_noise(clean, params, band), MIN_NOISE)
    # The footage at its own rate, then each replay rate forward and reversed.
    rates = [_Replays(params.reference_z) for _ in range(len(replay_fps) + 1)]
    for values, t in clean:
        index = np.arange(values.size, dtype=np.float64)
        rates[0].add(replay(values, t, params, band, noise), t)
        for replays, fps in zip(rates[1:], replay_fps, strict=True):
            for series in (values, values[::-1]):
                replays.add(replay(series, index / fps, params, band, noise), index / fps)
    share = per_day / 2.0  # sustained evidence and bursts
    pooled = _Replays.pool(rates)
    threshold = _limit(pooled.peaks(), pooled.seconds, share, pooled.highest, MIN_THRESHOLD)
    # The budget holds at the footage's own rate and near it, not only on average over
    # the replays: a slower replay's excursions last longer and peak higher, so one rate's
    # own tail can sit above the pooled one.
    own = own_fps(clean)
    near = [rates[0]] + [
        r for r, fps in zip(rates[1:], replay_fps, strict=True) if _within(fps / own, NEAR)
    ]
    tails = [tail_threshold(r.peaks(), r.seconds, share) for r in near] if each_rate else []
    threshold = max([threshold, *(tail for tail in tails if tail is not None)])
    burst = _limit(pooled.bursts(), pooled.seconds, share, pooled.burst_highest, MIN_BURST_Z)
    return Fit(low, level, high, noise, threshold, burst)


@dataclass(slots=True)
class _Replays:
    """The excursion peaks of the statistic and of the burst z over some replays, how long
    they lasted, and the highest values they reached."""

    reference_z: float
    _peaks: list[npt.NDArray[np.float64]] = field(default_factory=list)
    _bursts: list[npt.NDArray[np.float64]] = field(default_factory=list)
    seconds: float = 0.0
    highest: float = 0.0
    burst_highest: float = -math.inf

    @classmethod
    def pool(cls, parts: Sequence[_Replays]) -> _Replays:
        out = cls(parts[0].reference_z)
        for part in parts:
            out._peaks += part._peaks
            out._bursts += part._bursts
            out.seconds += part.seconds
            out.highest = max(out.highest, part.highest)
            out.burst_highest = max(out.burst_highest, part.burst_highest)
        return out

    def add(self, replayed: tuple[npt.NDArray[np.float64], ...], times: npt.ArrayLike) -> None:
        stats, _, bursts = replayed
        k = self.reference_z
        self._peaks.append(excursion_peaks(stats))
        self._bursts.append(excursion_peaks(np.where(bursts > k, bursts - k, 0.0)) + k)
        t = np.asarray(times, np.float64)
        self.seconds += float(t[-1] - t[0])
        self.highest = max(self.highest, float(stats.max()))
        self.burst_highest = max(self.burst_highest, float(bursts.max()))

    def peaks(self) -> npt.NDArray[np.float64]:
        return np.concatenate(self._peaks)  # fit_class adds the footage itself first

    def bursts(self) -> npt.NDArray[np.float64]:
        return np.concatenate(self._bursts)


def own_fps(runs: Sequence[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]) -> float:
    """The footage's frame rate: one over the median step of its times, repeated times left
    out (fit_class's runs always move on in time)."""
    steps = np.concatenate([np.diff(t) for _, t in runs])
    return 1.0 / float(np.median(steps[steps > 0]))


def _within(ratio: float, factor: float) -> bool:
    """1 / factor <= ratio <= factor, up to the rounding of a rate read from times."""
    return abs(math.log(ratio)) <= math.log(factor) + 1e-3


def _limit(
    peaks: npt.NDArray[np.float64], seconds: float, per_day: float, highest: float, least: float
) -> float:
    """A threshold for `per_day` from excursion peaks, with the safety floors: the tail's
    value but at least REPLAY_SAFETY × the highest replayed value, SHORT_CALIBRATION_SAFETY
    × it where the peaks are too few for a tail, and never below `least`."""
    tail = tail_threshold(peaks, seconds, per_day)
    if tail is None:
        value = SHORT_CALIBRATION_SAFETY * highest
    else:
        value = max(tail, REPLAY_SAFETY * highest)
    return max(value, least)


def smooth(
    values: npt.ArrayLike, times: npt.ArrayLike, smoothing_s: float
) -> npt.NDArray[np.float64]:
    """The detector's exponential smoothing over a whole series."""
    x = np.asarray(values, np.float64)
    t = np.asarray(times, np.float64)
    out = np.empty_like(x)
    if x.size == 0:
        return out
    s = x[0]
    out[0] = s
    for i in range(1, x.size):
        dt = t[i] - t[i - 1]
        alpha = 1.0 if smoothing_s == 0 else 1.0 - math.exp(-max(dt, 0.0) / smoothing_s)
        s += alpha * (x[i] - s)
        out[i] = s
    return out
