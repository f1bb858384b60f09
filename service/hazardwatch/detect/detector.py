"""Online, causal temporal detector: per camera and score channel, driven by timestamps.

Two decision rules share one state machine (idle → active → cooldown → idle):

- `evidence` (the default): each channel's `Evidence` (detect/evidence.py) turns the class
  probability into a CUSUM statistic measured in this camera's own noise for this class,
  accumulated per second. An event opens when the statistic reaches the class's threshold
  (`ClassNormal.threshold`, derived at calibration for `false_alarms_per_day`), starting
  where the statistic last left zero; it ends when the statistic has drained back to zero
  (held at most at the threshold while open, so the end follows the hazard's end within
  threshold / reference_z seconds). A strong excess fires in threshold / (z − k) seconds,
  a weak sustained one later, noise below k never. A sight far outside normal opens an
  event at once: the fast-smoothed excess (`Evidence.burst_z`) at or above the class's
  calibrated burst limit (`ClassNormal.burst`); the statistic is then raised to the
  threshold, so that event ends like any other. The baseline inside the statistic is
  learned only while no event is open and never leaves the camera's normal band.
- `offset` (the rule before issue 28, kept for comparison in `eval scores`): the smoothed
  score minus a baseline must stay `enter_threshold` above for `min_duration_s`
  (pending), and the event ends below `exit_threshold`.

Frames that match one of the camera's normal references (`reference_match`, cosine of CLIP
image embeddings) count as normal: their scores are capped at the baseline, so a sight an
operator marked as a false alarm gives no evidence again.

Every decision at time t uses only samples up to t. Events: started, updated (a new
peak), ended — with times, peak and mean of the smoothed score, the peak's frame, and the
statistic and threshold that opened them.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from hazardwatch.detect.channel import Channel, ChannelState, OpenEvent
from hazardwatch.detect.evidence import Evidence, EvidenceParams, logit
from hazardwatch.detect.normal import CameraNormal, evidence_noise
from hazardwatch.records import ClassNormal, EventKind

log = logging.getLogger(__name__)

EndReason = Literal["below_exit", "max_duration", "flushed"]
Rule = Literal["evidence", "offset"]
RULES = ("evidence", "offset")
# A checkpoint later than a camera's first frame by up to this, and not in the future, is
# taken up and the frames before it skipped: after a kill, the broker delivers again the
# frames not yet acknowledged, some of which the checkpoint saved had seen.
REDELIVERED_S = 30.0
# An update is reported when the peak has grown by at least this much since the last report.
PEAK_REPORT_STEP = 0.02


@dataclass(frozen=True, slots=True)
class DetectorParams:
    rule: Rule = "evidence"
    false_alarms_per_day: float = 1.0
    smoothing_s: float = 1.0
    burst_smoothing_s: float = 0.25
    reference_z: float = 2.0
    max_gap_s: float = 1.0
    cooldown_s: float = 10.0
    max_event_s: float = 600.0
    baseline_s: float = 60.0
    reference_match: float = 0.95
    # The offset rule's (rule: offset) settings.
    enter_threshold: float = 0.2
    exit_threshold: float = 0.15
    min_duration_s: float = 1.0
    baseline: bool = True
    normal_margin: float = 0.1

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"rule {self.rule!r} is not one of {', '.join(RULES)}")
        if self.exit_threshold > self.enter_threshold:
            raise ValueError(
                f"exit_threshold {self.exit_threshold} must be <= enter_threshold "
                f"{self.enter_threshold}"
            )
        for name in (
            "smoothing_s",
            "burst_smoothing_s",
            "min_duration_s",
            "cooldown_s",
            "reference_z",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("max_event_s", "baseline_s", "max_gap_s", "false_alarms_per_day"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        if self.normal_margin < 0:
            raise ValueError("normal_margin must be >= 0")
        if not 0 < self.reference_match <= 1:
            raise ValueError("reference_match must be in (0, 1]")

    @property
    def evidence(self) -> EvidenceParams:
        return EvidenceParams(
            self.smoothing_s,
            self.baseline_s,
            self.reference_z,
            self.max_gap_s,
            self.burst_smoothing_s,
        )

    @classmethod
    def from_settings(cls, settings: Any) -> DetectorParams:
        """From a `DetectorSettings` section (duck-typed to keep this module standalone)."""
        return cls(**{name: getattr(settings, name) for name in cls.__dataclass_fields__})


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
    # What opened it: the decision statistic and its threshold (offset rule: the signal
    # and enter_threshold).
    statistic: float | None = None
    threshold: float | None = None

    @property
    def duration_s(self) -> float:
        end = self.ended_at if self.ended_at is not None else self.at
        return end - self.started_at


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
        """`normal`: the camera's learned normal (bands, thresholds, restored baselines).
        A class with a calibrated threshold follows the evidence rule; one without (the
        bank's prior, no normal at all) the offset rule on its band."""
        self.camera = camera
        self.params = params or DetectorParams()
        self._channel_params = dict(channel_params or {})
        self._only = frozenset(channels) if channels is not None else None
        self._channels: dict[str, Channel] = {}
        self.normal = normal or CameraNormal()
        self.skipped_out_of_order = 0
        # Taken up by each channel at its first sample (`resume`).
        self._checkpoint: dict[str, Mapping[str, Any]] = {}
        self._open: dict[str, OpenEvent] = {}
        self.checkpoint_discarded = 0  # channels whose checkpoint could not be taken up
        self._now, self._redelivered_s = math.inf, 0.0
        self._resumed_at: dict[str, float] = {}  # by channel: its checkpoint's last frame

    def band(self, channel: str) -> tuple[float, float]:
        """Where the offset rule's baseline may live: the normal band widened by
        normal_margin (probabilities)."""
        band = self.normal.band(channel)
        if band is None:
            return (-math.inf, math.inf)
        margin = self.params_for(channel).normal_margin
        return (band.low - margin, band.high + margin)

    def baselines(self) -> dict[str, float]:
        """Every channel's baseline now, as a probability (to persist with the state)."""
        return {name: self._baseline(ch) for name, ch in self._channels.items()}

    @staticmethod
    def _baseline(ch: Channel) -> float:
        if ch.evidence is None:
            return ch.baseline
        return 1.0 / (1.0 + math.exp(-ch.evidence.baseline))

    def checkpoint(self) -> dict[str, dict[str, Any]]:
        """Every channel's running state (detect/channel.py), to save with the camera's;
        a channel not seen yet keeps the checkpoint it was resumed from."""
        return {
            **{name: dict(saved) for name, saved in self._checkpoint.items()},
            **{name: ch.checkpoint() for name, ch in self._channels.items()},
        }

    def resume(
        self,
        checkpoint: Mapping[str, Mapping[str, Any]],
        open_events: Mapping[str, OpenEvent],
        now: float = math.inf,
        redelivered_s: float = 0.0,
    ) -> None:
        """Before the first sample: each channel goes on from its checkpoint (a camera taken
        from another run or instance) and with the event stored open for it, under its id,
        instead of starting afresh. `now`: the wall clock (seconds since the epoch, as the
        samples' times), which no live camera's checkpoint can be later than.
        `redelivered_s`: how far before the checkpoint the first frames may be and still
        be frames it saw, delivered again (the events role: `REDELIVERED_S`; a process
        reading its cameras itself gets none again: 0)."""
        self._checkpoint = {
            name: saved for name, saved in checkpoint.items() if isinstance(saved, Mapping)
        }
        self._open = dict(open_events)
        self._now, self._redelivered_s = now, redelivered_s

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
        """The current decision signal of a channel: evidence, how far to its threshold
        (1.0 opens an event); offset, smoothed minus baseline (or smoothed)."""
        ch = self._channels.get(channel)
        if ch is None:
            return None
        if ch.evidence is not None:
            return _progress(ch)
        return ch.smoothed - ch.baseline if self.params_for(channel).baseline else ch.smoothed

    def progress(self, channel: str) -> float | None:
        """How far the channel is on its way to an event, 1.0 at its threshold, the same
        for both rules (what the scores series stores for Grafana): evidence, the larger of
        statistic / threshold and burst z / burst limit; offset, signal / enter_threshold
        (None when that is not above 0)."""
        ch = self._channels.get(channel)
        if ch is None:
            return None
        if ch.evidence is not None:
            return _progress(ch)
        enter = self.params_for(channel).enter_threshold
        signal = self.signal(channel)
        return signal / enter if signal is not None and enter > 0 else None

    def explain(self, channel: str) -> dict[str, Any] | None:
        """The channel's decision now (for the API): its state and signal (evidence: the
        fraction of the way to its threshold), and the evidence rule's statistic, z and
        noise. None: not seen yet."""
        ch = self._channels.get(channel)
        if ch is None:
            return None
        out: dict[str, Any] = {
            "state": str(ch.state),
            "signal": self.signal(channel),
            "progress": self.progress(channel),
            "smoothed": self.smoothed(channel),
            "baseline": self._baseline(ch),
        }
        if ch.evidence is not None:
            out.update(
                statistic=ch.evidence.statistic, z=ch.evidence.z, burst_z=ch.evidence.burst_z
            )
        return out

    def smoothed(self, channel: str) -> float | None:
        ch = self._channels.get(channel)
        if ch is None:
            return None
        return ch.evidence.smoothed if ch.evidence is not None else ch.smoothed

    def baseline(self, channel: str) -> float | None:
        ch = self._channels.get(channel)
        return self._baseline(ch) if ch is not None else None

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
                ch = self._channels[name] = self._new_channel(name, t, score)
                if not self._resume(name, ch, t):
                    continue  # the first sample only starts the channel
            if t < ch.last_t or (t == ch.last_t and self._resumed_at.get(name) == t):
                self.skipped_out_of_order += 1  # (or the checkpoint's own frame again)
                continue
            p = self.params_for(name)
            if normal_similarity is not None and normal_similarity >= p.reference_match:
                score = min(score, self._baseline(ch))
            if ch.evidence is not None:
                self._step_evidence(name, ch, t, score, ref, events)
            else:
                self._step_offset(name, ch, t, score, ref, events)
        return events

    def flush(self, t: float) -> list[DetectionEvent]:
        """End every open event (shutdown, end of input); reason 'flushed'."""
        events: list[DetectionEvent] = []
        for name, ch in self._channels.items():
            if ch.state == ChannelState.ACTIVE:
                events.append(self._end(name, ch, max(t, ch.last_t), "flushed"))
        return events

    # ------------------------------------------------------------------ internals

    def _new_channel(self, name: str, t: float, score: float) -> Channel:
        restored = self.normal.baselines.get(name)
        p = self.params_for(name)
        band = self.normal.band(name)
        if band is None or band.threshold is None or rule_of(p, band) == "offset":
            return Channel(t, score, self.band(name), restored)
        ch = Channel(t, score, (-math.inf, math.inf), None)
        limits, noise = (logit(band.low), logit(band.high)), evidence_noise(band)
        start = logit(restored) if restored is not None else None
        ch.evidence = Evidence(p.evidence, t, score, limits, noise, start)
        ch.threshold = band.threshold
        ch.burst = band.burst if band.burst is not None else math.inf
        return ch

    def _resume(self, name: str, ch: Channel, t: float) -> bool:
        """Take up the channel's checkpoint and open event, if any; whether the first
        sample is then a new one to step (the checkpoint ends before it)."""
        saved, opened = self._checkpoint.pop(name, None), self._open.pop(name, None)
        saved_t = _number(saved.get("t")) if saved is not None else -math.inf
        if saved_t > t and (saved_t - t > self._redelivered_s or saved_t > self._now):
            # A first frame older than the checkpoint, and not only by frames delivered
            # again after a kill (which it has seen: they are skipped): a clock that
            # started again (a file replayed, faster than real time). Going on from it
            # would drop every frame until the clock passed it; the class starts afresh
            # instead (restored baseline, the open event going on).
            log.debug(
                "camera %s, class %s: the saved detector state is %.1f s ahead of the first "
                "frame; starting afresh",
                self.camera,
                name,
                saved_t - t,
            )
            self.checkpoint_discarded += 1
            saved = None
        try:
            taken = ch.restore(saved, opened)
            if taken:
                self._resumed_at[name] = ch.last_t
            return taken
        except (KeyError, TypeError, ValueError) as exc:
            log.warning(
                "camera %s, class %s: the saved detector state is unreadable (%s); starting afresh",
                self.camera,
                name,
                exc,
            )
            self.checkpoint_discarded += 1
            return ch.restore(None, opened)

    def _step_evidence(
        self,
        name: str,
        ch: Channel,
        t: float,
        score: float,
        ref: Any,
        events: list[DetectionEvent],
    ) -> None:
        p = self.params_for(name)
        evidence = ch.evidence
        assert evidence is not None
        ch.last_t = t
        active = ch.state == ChannelState.ACTIVE
        statistic = evidence.step(
            t, score, learn=not active, cap=ch.threshold if active else math.inf
        )
        smoothed = evidence.smoothed
        if ch.state == ChannelState.COOLDOWN and t - ch.state_since >= p.cooldown_s:
            ch.state, ch.state_since = ChannelState.IDLE, t
        if ch.state == ChannelState.ACTIVE:
            if statistic <= 0.0:  # this sample is no longer part of the event
                events.append(self._end(name, ch, t, "below_exit"))
            else:
                self._continue(name, ch, t, smoothed, ref, events)
            return
        burst = (
            ch.state == ChannelState.IDLE
            and statistic < ch.threshold
            and evidence.burst_z >= ch.burst
        )
        if burst:
            evidence.hold(t, ch.threshold)
        elif statistic <= 0.0:
            ch.reset_run(t)
            return
        if evidence.run_start > ch.last_end:  # a run that began after the last event
            ch.accumulate(t, smoothed, ref)
        if ch.state == ChannelState.IDLE and evidence.statistic >= ch.threshold:
            ch.onset = max(evidence.run_start, ch.last_end)
            ch.opened_by = (evidence.burst_z, ch.burst) if burst else (statistic, ch.threshold)
            if not ch.count:
                ch.accumulate(t, smoothed, ref)
            events.append(self._start(name, ch, t))

    def _step_offset(
        self,
        name: str,
        ch: Channel,
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
            ch.reset_run(t)
        if ch.state == ChannelState.PENDING:
            if signal <= p.enter_threshold:
                ch.state, ch.state_since = ChannelState.IDLE, t
            else:
                ch.accumulate(t, ch.smoothed, ref)
                if t - ch.onset >= p.min_duration_s:
                    ch.opened_by = (signal, p.enter_threshold)
                    events.append(self._start(name, ch, t))
        elif ch.state == ChannelState.ACTIVE:
            if signal < p.exit_threshold:  # this sample is no longer part of the event
                events.append(self._end(name, ch, t, "below_exit"))
            else:
                self._continue(name, ch, t, ch.smoothed, ref, events)

        if p.baseline and ch.state in (ChannelState.IDLE, ChannelState.COOLDOWN):
            beta = 1.0 - math.exp(-dt / p.baseline_s)
            ch.baseline = ch.clamp(ch.baseline + beta * (ch.smoothed - ch.baseline))

    def _continue(
        self,
        name: str,
        ch: Channel,
        t: float,
        value: float,
        ref: Any,
        events: list[DetectionEvent],
    ) -> None:
        """One more sample of an open event: a new peak is reported, a long event ends."""
        p = self.params_for(name)
        ch.accumulate(t, value, ref)
        if t - ch.onset >= p.max_event_s:
            events.append(self._end(name, ch, t, "max_duration"))
        elif ch.peak >= ch.reported_peak + PEAK_REPORT_STEP:
            ch.reported_peak = ch.peak
            events.append(self._event("updated", name, ch, t))

    def _start(self, name: str, ch: Channel, t: float) -> DetectionEvent:
        ch.state, ch.state_since = ChannelState.ACTIVE, t
        ch.event_id = str(uuid.uuid4())
        ch.reported_peak = ch.peak
        return self._event("started", name, ch, t)

    def _end(self, name: str, ch: Channel, t: float, reason: EndReason) -> DetectionEvent:
        event = self._event("ended", name, ch, t, ended_at=t, end_reason=reason)
        ch.state, ch.state_since, ch.last_end = ChannelState.COOLDOWN, t, t
        ch.reset_run(t)
        return event

    def _event(
        self,
        kind: EventKind,
        name: str,
        ch: Channel,
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
            statistic=ch.opened_by[0],
            threshold=ch.opened_by[1],
        )


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _progress(ch: Channel) -> float:
    evidence = ch.evidence
    assert evidence is not None
    burst = evidence.burst_z / ch.burst if math.isfinite(ch.burst) else 0.0
    return max(evidence.statistic / ch.threshold, burst)


def rule_of(params: DetectorParams, band: ClassNormal | None) -> Rule:
    """The rule that decides a class: evidence where the camera's calibration derived a
    threshold from its noise; else (a camera never calibrated, or calibrated before
    thresholds were) the offset rule on the band, as before."""
    if params.rule == "evidence" and band is not None and band.threshold is not None:
        return "evidence"
    return "offset"


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
