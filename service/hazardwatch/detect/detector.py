"""Online, causal temporal detector: per camera and score channel, driven by timestamps.

For each named channel (a hazard class's probability live, any score in offline
evaluation) the detector keeps:

- an exponential moving average of the score (time constant `smoothing_s`, correct for
  irregular frame spacing: α = 1 − exp(−Δt/τ));
- optionally a baseline: a slower moving average of the smoothed score, learned only
  while the channel is idle, so a fixed camera's usual level (a parked car that always
  looks a bit like "stalled vehicle") is subtracted and an open event cannot teach the
  baseline that the hazard is normal;
- the camera's normal band for the channel (`CameraNormal`: calibrated on this camera's
  normal footage, or the prompt bank's prior), widened by `normal_margin`: the baseline
  starts at the first sample *clamped into the band* and never leaves it. Inside the band
  it follows benign drift as before; a level above the band is never learned as normal,
  so a hazard in view at start fires (the baseline starts at the band's top) and a slow
  climb fires once it is `enter_threshold` above the band, however slowly it came;
- frames that match one of the camera's normal references (`reference_match`, cosine of
  CLIP image embeddings) count as normal: their scores are capped at the baseline, so a
  sight an operator marked as a false alarm gives no evidence again;
- a state machine on the decision signal (smoothed − baseline, or smoothed):
  idle → pending when the signal rises above `enter_threshold`; pending → active once it
  has stayed above for `min_duration_s` (the event starts at the first crossing);
  active → cooldown when it falls below `exit_threshold` (hysteresis) or the event has
  lasted `max_event_s`; cooldown → idle after `cooldown_s`.

Every decision at time t uses only samples up to t. Events: started, updated (a new
peak), ended — with times, peak and mean of the smoothed score, and the peak's frame.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Literal

from hazardwatch.detect.normal import CameraNormal

log = logging.getLogger(__name__)

EventKind = Literal["started", "updated", "ended"]
EndReason = Literal["below_exit", "max_duration", "flushed"]
# An update is reported when the peak has grown by at least this much since the last report.
PEAK_REPORT_STEP = 0.02


@dataclass(frozen=True, slots=True)
class DetectorParams:
    smoothing_s: float = 1.0
    enter_threshold: float = 0.2
    exit_threshold: float = 0.15
    min_duration_s: float = 1.0
    cooldown_s: float = 10.0
    max_event_s: float = 600.0
    baseline: bool = True
    baseline_s: float = 60.0
    normal_margin: float = 0.1
    reference_match: float = 0.95

    def __post_init__(self) -> None:
        if self.exit_threshold > self.enter_threshold:
            raise ValueError(
                f"exit_threshold {self.exit_threshold} must be <= enter_threshold "
                f"{self.enter_threshold}"
            )
        for name in ("smoothing_s", "min_duration_s", "cooldown_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.max_event_s <= 0 or self.baseline_s <= 0:
            raise ValueError("max_event_s and baseline_s must be > 0")
        if self.normal_margin < 0:
            raise ValueError("normal_margin must be >= 0")
        if not 0 < self.reference_match <= 1:
            raise ValueError("reference_match must be in (0, 1]")

    @classmethod
    def from_settings(cls, settings: Any) -> DetectorParams:
        """From a `DetectorSettings` section (duck-typed to keep this module standalone)."""
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


class ChannelState(StrEnum):
    IDLE = "idle"
    PENDING = "pending"
    ACTIVE = "active"
    COOLDOWN = "cooldown"


@dataclass(frozen=True, slots=True)
class DetectionEvent:
    """What the detector emits; times are seconds since the epoch (or any fixed origin)."""

    kind: EventKind
    event_id: str
    camera: str
    channel: str
    started_at: float
    at: float  # when this was decided
    peak_score: float
    peak_at: float
    peak_ref: Any  # the caller's reference of the peak sample (frame, index…)
    mean_score: float
    ended_at: float | None = None
    end_reason: EndReason | None = None

    @property
    def duration_s(self) -> float:
        end = self.ended_at if self.ended_at is not None else self.at
        return end - self.started_at


class _Channel:
    """State of one channel on one camera."""

    __slots__ = (
        "baseline",
        "ceiling",
        "count",
        "event_id",
        "floor",
        "last_t",
        "onset",
        "onset_samples",
        "peak",
        "peak_at",
        "peak_ref",
        "reported_peak",
        "smoothed",
        "state",
        "state_since",
        "total",
    )

    def __init__(
        self, t: float, score: float, band: tuple[float, float], baseline: float | None
    ) -> None:
        self.floor, self.ceiling = band
        self.smoothed = score
        self.baseline = self.clamp(score if baseline is None else baseline)
        self.last_t = t
        self.state = ChannelState.IDLE
        self.state_since = t
        self.onset = t
        self.onset_samples: list[tuple[float, float, Any]] = []
        self.event_id = ""
        self.peak = -math.inf
        self.peak_at = t
        self.peak_ref: Any = None
        self.reported_peak = -math.inf
        self.total = 0.0
        self.count = 0

    def clamp(self, value: float) -> float:
        return min(max(value, self.floor), self.ceiling)


class TemporalDetector:
    """Per-camera detector over named score channels; feed it with `update`."""

    def __init__(
        self,
        camera: str,
        params: DetectorParams | None = None,
        channels: Iterable[str] | None = None,
        channel_params: Mapping[str, DetectorParams] | None = None,
        normal: CameraNormal | None = None,
    ) -> None:
        """`normal`: the camera's learned normal (bands, restored baselines); None: no bands."""
        self.camera = camera
        self.params = params or DetectorParams()
        self._channel_params = dict(channel_params or {})
        self._only = frozenset(channels) if channels is not None else None
        self._channels: dict[str, _Channel] = {}
        self.normal = normal or CameraNormal()
        self.skipped_out_of_order = 0

    def band(self, channel: str) -> tuple[float, float]:
        """Where the channel's baseline may live: the normal band widened by normal_margin."""
        band = self.normal.band(channel)
        if band is None:
            return (-math.inf, math.inf)
        margin = self.params_for(channel).normal_margin
        return (band.low - margin, band.high + margin)

    def baselines(self) -> dict[str, float]:
        """Every channel's adaptive baseline now (to persist with the camera's state)."""
        return {name: ch.baseline for name, ch in self._channels.items()}

    def state(self, channel: str) -> ChannelState:
        ch = self._channels.get(channel)
        return ch.state if ch is not None else ChannelState.IDLE

    @property
    def channels(self) -> frozenset[str] | None:
        """The channels this detector follows (None: every channel it is fed)."""
        return self._only

    def reconfigure(
        self, params: DetectorParams, channel_params: Mapping[str, DetectorParams] | None = None
    ) -> None:
        """New thresholds (a reloaded prompt bank); open events and baselines carry on."""
        self.params = params
        self._channel_params = dict(channel_params or {})

    def params_for(self, channel: str) -> DetectorParams:
        return self._channel_params.get(channel, self.params)

    def signal(self, channel: str) -> float | None:
        """The current decision signal of a channel (smoothed, minus baseline if enabled)."""
        ch = self._channels.get(channel)
        if ch is None:
            return None
        return ch.smoothed - ch.baseline if self.params_for(channel).baseline else ch.smoothed

    def smoothed(self, channel: str) -> float | None:
        ch = self._channels.get(channel)
        return ch.smoothed if ch is not None else None

    def baseline(self, channel: str) -> float | None:
        ch = self._channels.get(channel)
        return ch.baseline if ch is not None else None

    @property
    def active_channels(self) -> list[str]:
        return [name for name, ch in self._channels.items() if ch.state == ChannelState.ACTIVE]

    def update(
        self,
        t: float,
        scores: Mapping[str, float],
        ref: Any = None,
        normal_similarity: float | None = None,
    ) -> list[DetectionEvent]:
        """Feed one sample (time `t`, a score per channel); returns the events it decides.

        `normal_similarity`: the frame's best cosine with the camera's normal references;
        at or above `reference_match` the frame is a known normal sight.
        """
        events: list[DetectionEvent] = []
        for name, raw in scores.items():
            if self._only is not None and name not in self._only:
                continue
            score = float(raw)
            if not math.isfinite(score):
                continue
            ch = self._channels.get(name)
            if ch is None:
                restored = self.normal.baselines.get(name)
                self._channels[name] = _Channel(t, score, self.band(name), restored)
                continue
            if t < ch.last_t:
                self.skipped_out_of_order += 1
                continue
            p = self.params_for(name)
            if normal_similarity is not None and normal_similarity >= p.reference_match:
                score = min(score, ch.baseline)
            self._step(name, ch, t, score, ref, events)
        return events

    def flush(self, t: float) -> list[DetectionEvent]:
        """End every open event (shutdown, end of input); reason 'flushed'."""
        events: list[DetectionEvent] = []
        for name, ch in self._channels.items():
            if ch.state == ChannelState.ACTIVE:
                events.append(self._end(name, ch, max(t, ch.last_t), "flushed"))
        return events

    # ------------------------------------------------------------------ internals

    def _step(
        self,
        name: str,
        ch: _Channel,
        t: float,
        score: float,
        ref: Any,
        events: list[DetectionEvent],
    ) -> None:
        p = self.params_for(name)
        dt = t - ch.last_t
        ch.last_t = t
        alpha = 1.0 if p.smoothing_s == 0 else 1.0 - math.exp(-dt / p.smoothing_s)
        ch.smoothed += alpha * (score - ch.smoothed)
        signal = ch.smoothed - ch.baseline if p.baseline else ch.smoothed

        if ch.state == ChannelState.COOLDOWN and t - ch.state_since >= p.cooldown_s:
            ch.state, ch.state_since = ChannelState.IDLE, t

        if ch.state == ChannelState.IDLE and signal > p.enter_threshold:
            ch.state, ch.state_since, ch.onset = ChannelState.PENDING, t, t
            ch.onset_samples = []
        if ch.state == ChannelState.PENDING:
            if signal <= p.enter_threshold:
                ch.state, ch.state_since = ChannelState.IDLE, t
            else:
                ch.onset_samples.append((t, ch.smoothed, ref))
                if t - ch.onset >= p.min_duration_s:
                    events.append(self._start(name, ch, t))
        elif ch.state == ChannelState.ACTIVE:
            if signal < p.exit_threshold:  # this sample is no longer part of the event
                events.append(self._end(name, ch, t, "below_exit"))
            else:
                self._accumulate(ch, t, ch.smoothed, ref)
                if t - ch.onset >= p.max_event_s:
                    events.append(self._end(name, ch, t, "max_duration"))
                elif ch.peak >= ch.reported_peak + PEAK_REPORT_STEP:
                    ch.reported_peak = ch.peak
                    events.append(self._event("updated", name, ch, t))

        if p.baseline and ch.state in (ChannelState.IDLE, ChannelState.COOLDOWN):
            beta = 1.0 - math.exp(-dt / p.baseline_s)
            ch.baseline = ch.clamp(ch.baseline + beta * (ch.smoothed - ch.baseline))

    @staticmethod
    def _accumulate(ch: _Channel, t: float, value: float, ref: Any) -> None:
        ch.total += value
        ch.count += 1
        if value > ch.peak:
            ch.peak, ch.peak_at, ch.peak_ref = value, t, ref

    def _start(self, name: str, ch: _Channel, t: float) -> DetectionEvent:
        ch.state, ch.state_since = ChannelState.ACTIVE, t
        ch.event_id = str(uuid.uuid4())
        ch.peak, ch.total, ch.count = -math.inf, 0.0, 0
        for sample_t, value, ref in ch.onset_samples:
            self._accumulate(ch, sample_t, value, ref)
        ch.onset_samples = []
        ch.reported_peak = ch.peak
        return self._event("started", name, ch, t)

    def _end(self, name: str, ch: _Channel, t: float, reason: EndReason) -> DetectionEvent:
        event = self._event("ended", name, ch, t, ended_at=t, end_reason=reason)
        ch.state, ch.state_since = ChannelState.COOLDOWN, t
        return event

    def _event(
        self,
        kind: EventKind,
        name: str,
        ch: _Channel,
        t: float,
        ended_at: float | None = None,
        end_reason: EndReason | None = None,
    ) -> DetectionEvent:
        return DetectionEvent(
            kind=kind,
            event_id=ch.event_id,
            camera=self.camera,
            channel=name,
            started_at=ch.onset,
            at=t,
            peak_score=ch.peak,
            peak_at=ch.peak_at,
            peak_ref=ch.peak_ref,
            mean_score=ch.total / ch.count if ch.count else ch.peak,
            ended_at=ended_at,
            end_reason=end_reason,
        )


def channel_params(bank: Any, params: DetectorParams) -> dict[str, DetectorParams]:
    """Per-class threshold overrides from a prompt bank's classes (enter/exit_threshold)."""
    out = {}
    for c in bank.classes:
        if c.enter_threshold is not None or c.exit_threshold is not None:
            enter = c.enter_threshold if c.enter_threshold is not None else params.enter_threshold
            exit_ = (
                c.exit_threshold
                if c.exit_threshold is not None
                else min(params.exit_threshold, enter)
            )
            out[c.name] = replace(params, enter_threshold=enter, exit_threshold=exit_)
    return out
