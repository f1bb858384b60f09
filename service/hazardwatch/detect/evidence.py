"""The evidence a class's probability gives against the camera's normal: a CUSUM in seconds.

One `Evidence` per camera and class; the live detector and the calibration replay both step
it, sample by sample, so what a calibration measures is what runs.

Per sample at time t with class probability p:

1. `smoothed`: exponential moving average of p with time constant `smoothing_s` (correct
   for irregular spacing: α = 1 − exp(−Δt/τ)).
2. `level` = logit(smoothed). Probabilities of a softmax are bounded and skewed; their
   logits are close to linear in the CLIP cosines, so one noise scale serves a class at
   0.02 and a class at 0.55 (a normally high class can still rise).
3. `baseline`: a slow moving average of the level (`baseline_s`), learned only while no
   event is open, and never outside the camera's normal band (calibrated quantiles, or
   the bank's prior): benign drift inside the band is followed, a level above it is never
   learned as normal.
4. `z` = (level − baseline) / noise, where `noise` is the camera's calibrated scale of
   that residual: the excess in units of this camera's own noise for this class.
5. The statistic (Page's CUSUM, integrated over time rather than counted in samples):
   S ← max(0, S + (z − reference_z) · min(Δt, max_gap_s)). It grows by (z − k) per second
   of evidence, so a strong excess crosses a threshold h in h / (z − k) seconds and a weak
   sustained one later; noise below k drains it. Counting seconds, not samples, keeps the
   statistic the same whatever the frame rate; the gap cap keeps one sample after a long
   silence (a motion gate's heartbeat) from counting for more than `max_gap_s`.

6. `burst_z`: the same excess on a fast smoothing (`burst_smoothing_s`, a quarter second),
   in the same noise units. A CUSUM needs threshold / (z − k) seconds of evidence, so a
   one-second sight, however clear, rarely gathers enough; a single observation far
   outside normal is decided on its own (the combined Shewhart–CUSUM scheme, Lucas 1982:
   the CUSUM for sustained small shifts, the Shewhart limit for large sudden ones). The
   burst limit, like the CUSUM threshold, comes from calibration (`detect.thresholds`).

`run_start` is the time the current excursion left zero: Page's estimate of when the change
began, which becomes the event's start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Probabilities are clipped to [EPS, 1 − EPS] before the logit: a softmax output of exactly
# 0 or 1 is a float underflow, not infinite evidence.
EPS = 1e-6
# The smallest noise scale a class may have (logit units): a class that never moved in
# calibration must not make any flicker infinitely significant.
MIN_NOISE = 0.05


def logit(p: float) -> float:
    q = min(max(p, EPS), 1.0 - EPS)
    return math.log(q / (1.0 - q))


@dataclass(frozen=True, slots=True)
class EvidenceParams:
    """The statistic's time constants and reference (`DetectorParams.evidence`, whose
    defaults are the settings'); thresholds come from calibration."""

    smoothing_s: float
    baseline_s: float
    reference_z: float
    max_gap_s: float
    burst_smoothing_s: float

    def __post_init__(self) -> None:
        if self.smoothing_s < 0 or self.burst_smoothing_s < 0:
            raise ValueError("smoothing_s and burst_smoothing_s must be >= 0")
        if self.baseline_s <= 0 or self.max_gap_s <= 0:
            raise ValueError("baseline_s and max_gap_s must be > 0")
        if self.reference_z < 0:
            raise ValueError("reference_z must be >= 0")


class Evidence:
    """The CUSUM statistic of one class on one camera (see the module docstring)."""

    __slots__ = (
        "baseline",
        "burst_z",
        "ceiling",
        "fast",
        "floor",
        "last_t",
        "level",
        "noise",
        "params",
        "run_start",
        "smoothed",
        "statistic",
        "z",
    )

    def __init__(
        self,
        params: EvidenceParams,
        t: float,
        p: float,
        band: tuple[float, float],
        noise: float,
        baseline: float | None = None,
    ) -> None:
        """`band`: (low, high) of the normal level in logits; `baseline`: a restored one."""
        self.params = params
        self.floor, self.ceiling = band
        self.noise = max(noise, MIN_NOISE)
        self.smoothed = min(max(p, 0.0), 1.0)
        self.fast = self.smoothed
        self.level = logit(self.smoothed)
        self.baseline = self._clamp(self.level if baseline is None else baseline)
        self.z = (self.level - self.baseline) / self.noise
        self.burst_z = self.z
        self.statistic = 0.0
        self.last_t = t
        self.run_start = t

    def _clamp(self, value: float) -> float:
        return min(max(value, self.floor), self.ceiling)

    def step(self, t: float, p: float, learn: bool = True, cap: float = math.inf) -> float:
        """One sample (t not before the last one); returns the statistic.

        `learn`: whether the baseline may follow (not while an event is open);
        `cap`: the statistic is held at most here (the threshold, once an event is open,
        so its end follows the hazard's end within threshold / reference_z seconds).
        """
        params = self.params
        dt = t - self.last_t
        self.last_t = t
        p = min(max(p, 0.0), 1.0)
        self.smoothed += _alpha(dt, params.smoothing_s) * (p - self.smoothed)
        self.fast += _alpha(dt, params.burst_smoothing_s) * (p - self.fast)
        self.level = logit(self.smoothed)
        self.z = (self.level - self.baseline) / self.noise
        self.burst_z = (logit(self.fast) - self.baseline) / self.noise
        was_zero = self.statistic <= 0.0
        gain = (self.z - params.reference_z) * min(dt, params.max_gap_s)
        self.statistic = min(max(0.0, self.statistic + gain), cap)
        if was_zero and self.statistic > 0.0:
            self.run_start = t
        if learn:
            beta = 1.0 - math.exp(-dt / params.baseline_s)
            self.baseline = self._clamp(self.baseline + beta * (self.level - self.baseline))
        return self.statistic

    def hold(self, t: float, value: float) -> None:
        """Raise the statistic to at least `value` (an event opened by a burst: it then
        drains like any other once the sight is gone); a run starts here if none was on."""
        if self.statistic <= 0.0:
            self.run_start = t
        self.statistic = max(self.statistic, value)


def _alpha(dt: float, tau: float) -> float:
    """The weight of a new sample dt seconds after the last in an exponential average of
    time constant tau (exact for irregular spacing; tau 0: no smoothing)."""
    return 1.0 if tau == 0 else 1.0 - math.exp(-dt / tau)
