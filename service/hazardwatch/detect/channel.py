"""What the detector holds for one class on one camera (`Channel`), and its checkpoint.

A checkpoint is the channel's whole running state as JSON-safe values: the state machine
(idle, active…, since when, the open event's id, start, peak and mean so far) and the
decision statistic with what feeds it (evidence rule: the smoothed probabilities, the
baseline, the CUSUM and where its run began; offset rule: the smoothed score and the
baseline). It is saved with the camera's state (`CameraNormal.checkpoint`) and restored
when another run or another events instance takes the camera: the statistic goes on from
where it stood instead of starting from zero, and an open event goes on under its id.

`restore` reconciles a checkpoint with the events the database holds open (`OpenEvent`):
an event open there continues (from the checkpoint when it is the one the checkpoint was
in, else from its stored start and peak with the statistic held at the threshold, as an
open event's statistic is); a checkpoint in an event that is no longer open (it ended
after the checkpoint was saved) is in cooldown from the checkpoint's time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from hazardwatch.detect.evidence import Evidence, logit


class ChannelState(StrEnum):
    IDLE = "idle"
    PENDING = "pending"
    ACTIVE = "active"
    COOLDOWN = "cooldown"


@dataclass(frozen=True, slots=True)
class OpenEvent:
    """An event stored open, to continue (times in seconds since the epoch)."""

    event_id: str
    started_at: float
    peak_score: float
    peak_at: float
    mean_score: float
    opened_by: tuple[float, float]  # the statistic and threshold that opened it


class Channel:
    """State of one channel on one camera."""

    __slots__ = (
        "baseline",
        "burst",
        "ceiling",
        "count",
        "event_id",
        "evidence",
        "floor",
        "last_end",
        "last_t",
        "onset",
        "opened_by",
        "peak",
        "peak_at",
        "peak_ref",
        "reported_peak",
        "smoothed",
        "state",
        "state_since",
        "threshold",
        "total",
    )

    def __init__(
        self, t: float, score: float, band: tuple[float, float], baseline: float | None
    ) -> None:
        self.floor, self.ceiling = band
        self.smoothed = score
        self.baseline = self.clamp(score if baseline is None else baseline)
        self.evidence: Evidence | None = None
        self.threshold = math.inf
        self.burst = math.inf
        self.last_t = t
        self.last_end = -math.inf
        self.state = ChannelState.IDLE
        self.state_since = t
        self.onset = t
        self.event_id = ""
        self.opened_by = (0.0, 0.0)
        self.reset_run(t)

    def clamp(self, value: float) -> float:
        return min(max(value, self.floor), self.ceiling)

    def reset_run(self, t: float) -> None:
        """Forget the peak and mean gathered so far (a new run towards an event)."""
        self.peak = -math.inf
        self.peak_at = t
        self.peak_ref: Any = None
        self.reported_peak = -math.inf
        self.total = 0.0
        self.count = 0

    def accumulate(self, t: float, value: float, ref: Any) -> None:
        self.total += value
        self.count += 1
        if value > self.peak:
            self.peak, self.peak_at, self.peak_ref = value, t, ref

    @property
    def rule(self) -> str:
        return "offset" if self.evidence is None else "evidence"

    # ------------------------------------------------------------------ checkpoint

    def checkpoint(self) -> dict[str, Any]:
        """The running state as JSON-safe values (infinities as None)."""
        out: dict[str, Any] = {
            "rule": self.rule,
            "t": self.last_t,
            "state": str(self.state),
            "state_since": self.state_since,
            "onset": self.onset,
            "event_id": self.event_id,
            "opened_by": list(self.opened_by),
            "last_end": _finite(self.last_end),
            "peak": _finite(self.peak),
            "peak_at": self.peak_at,
            "reported_peak": _finite(self.reported_peak),
            "total": self.total,
            "count": self.count,
        }
        evidence = self.evidence
        if evidence is None:
            out.update(smoothed=self.smoothed, baseline=self.baseline)
        else:
            out["evidence"] = {
                "smoothed": evidence.smoothed,
                "fast": evidence.fast,
                "baseline": evidence.baseline,
                "statistic": evidence.statistic,
                "run_start": evidence.run_start,
            }
        return out

    def restore(self, saved: Mapping[str, Any] | None, opened: OpenEvent | None) -> bool:
        """Take up a checkpoint (None: none, or not for this channel's rule) and the event
        stored open for this channel (None: none). Returns whether the checkpoint was
        taken: the sample the channel was created with is then a new one, to step.
        Raises ValueError, TypeError or KeyError on a malformed checkpoint, unchanged."""
        taken = saved is not None and saved.get("rule") == self.rule
        if taken:
            assert saved is not None
            self._load(saved)
        if self.state == ChannelState.ACTIVE and (
            opened is None or opened.event_id != self.event_id
        ):
            # The checkpoint's event ended after it was saved (or was never stored). (A
            # pending run, not yet an event, goes on as it was.)
            self.state, self.state_since = ChannelState.COOLDOWN, self.last_t
            if self.evidence is not None:
                self.evidence.statistic = 0.0
            self.reset_run(self.last_t)
        if opened is not None:
            self._continue(opened)
        return taken

    def _load(self, saved: Mapping[str, Any]) -> None:
        values = {
            name: _number(saved, name) for name in ("t", "state_since", "onset", "peak_at", "total")
        }
        count = int(saved["count"])
        last_end = _or_inf(saved.get("last_end"), -math.inf)
        peak = _or_inf(saved.get("peak"), -math.inf)
        reported_peak = _or_inf(saved.get("reported_peak"), -math.inf)
        state = ChannelState(str(saved["state"]))
        opened_by = tuple(float(v) for v in saved["opened_by"])
        if len(opened_by) != 2:
            raise ValueError("opened_by must be [statistic, threshold]")
        evidence = self.evidence
        if evidence is not None:
            fed = saved["evidence"]
            smoothed, fast = _probability(fed, "smoothed"), _probability(fed, "fast")
            baseline, statistic = _number(fed, "baseline"), _number(fed, "statistic")
            run_start = _number(fed, "run_start")
        else:
            smoothed, baseline = _number(saved, "smoothed"), _number(saved, "baseline")
        # Everything read: now change the channel (a bad checkpoint leaves it as it was).
        self.last_t, self.state_since, self.onset = (
            values["t"],
            values["state_since"],
            values["onset"],
        )
        self.state, self.event_id = state, str(saved.get("event_id", ""))
        self.opened_by = (opened_by[0], opened_by[1])
        self.last_end, self.peak, self.reported_peak = last_end, peak, reported_peak
        self.peak_at, self.peak_ref = values["peak_at"], None
        self.total, self.count = values["total"], count
        if evidence is None:
            self.smoothed, self.baseline = smoothed, self.clamp(baseline)
            return
        evidence.smoothed, evidence.fast = smoothed, fast
        evidence.level = logit(smoothed)
        evidence.baseline = min(max(baseline, evidence.floor), evidence.ceiling)
        evidence.z = (evidence.level - evidence.baseline) / evidence.noise
        evidence.burst_z = (logit(fast) - evidence.baseline) / evidence.noise
        evidence.statistic, evidence.run_start = max(0.0, statistic), run_start
        evidence.last_t = self.last_t

    def _continue(self, opened: OpenEvent) -> None:
        """Go on with an event stored open: the one the checkpoint was in keeps its running
        mean; another (opened after the checkpoint was saved) starts from what was stored
        of it, its statistic held at the threshold as an open event's is. The peak is the
        stored one either way: the stored snapshot and embedding stay until a higher one."""
        if not (self.state == ChannelState.ACTIVE and self.event_id == opened.event_id):
            self.state, self.state_since = ChannelState.ACTIVE, self.last_t
            self.onset, self.event_id = opened.started_at, opened.event_id
            self.opened_by = opened.opened_by
            self.total, self.count = opened.mean_score, 1
            if self.evidence is not None:
                self.evidence.statistic = max(self.evidence.statistic, self.threshold)
                self.evidence.run_start = min(self.evidence.run_start, opened.started_at)
        self.peak, self.peak_at, self.peak_ref = opened.peak_score, opened.peak_at, None
        self.reported_peak = opened.peak_score


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _or_inf(value: Any, infinite: float) -> float:
    return infinite if value is None else float(value)


def _number(data: Mapping[str, Any], name: str) -> float:
    value = float(data[name])
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    return value


def _probability(data: Mapping[str, Any], name: str) -> float:
    value = _number(data, name)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a probability")
    return value
