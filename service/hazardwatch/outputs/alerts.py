"""Alert policy: which event changes become alerts, and what an alert says.

An event is alerted when its class severity reaches `min_severity` and no alert for the
same camera and class started within the cooldown; its updates (new peaks) are throttled;
its end is always sent when its start was, and so is `clip_ready` once the event's clip is
stored (the `end` alert's `clip_url` answers 202 with Retry-After until then). The
dispatcher runs on the writer thread (so an
event is durable before anyone hears of it) and only hands alerts to the channels' own
queues: a slow or dead receiver never reaches back into the pipeline.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from hazardwatch.metrics import Metrics
from hazardwatch.outputs.media_links import MediaSigner
from hazardwatch.records import SEVERITIES, EventKind, EventRecord, EventUpdate, Severity

log = logging.getLogger(__name__)
AlertType = Literal["new", "update", "end", "clip_ready", "test"]
TEST_CLASS = "hazardwatch_test_alert"
_TYPES: dict[EventKind, AlertType] = {"started": "new", "updated": "update", "ended": "end"}
MAX_AWAITING_CLIPS = 10_000  # ended events a clip_ready may still follow


@dataclass(frozen=True, slots=True)
class Alert:
    type: AlertType
    before: EventRecord | None
    after: EventRecord
    latency_from: float | None  # wall-clock receive time of the deciding frame
    snapshot_url: str | None
    clip_url: str | None

    @property
    def delivery_id(self) -> str:
        """Stable per change, so a receiver can drop a retried duplicate."""
        return f"{self.after.uuid}:{self.after.revision}:{self.type}"

    def payload(self) -> dict[str, Any]:
        e = self.after
        return {
            "type": self.type,
            "test": self.type == "test",
            "delivery_id": self.delivery_id,
            "event": event_json(e),
            "before": event_json(self.before) if self.before is not None else None,
            "camera": e.camera,
            "class_name": e.class_name,
            "severity": e.severity,
            "score": e.peak_score,
            "started_at": iso(e.started_at),
            "ended_at": iso(e.ended_at),
            "snapshot_url": self.snapshot_url,
            "clip_url": self.clip_url,
            "weather": e.weather.to_json() if e.weather is not None else None,
            "sent_at": iso(datetime.now(UTC)),
        }


def event_json(e: EventRecord) -> dict[str, Any]:
    data = asdict(e)
    for key in ("started_at", "ended_at", "peak_at", "verdict_at"):
        data[key] = iso(data[key])
    del data["peak_embedding"]  # internal: what a false-alarm verdict teaches the detector
    data["weather"] = e.weather.to_json() if e.weather is not None else None
    return data


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


class AlertChannel(Protocol):
    name: str

    def send(self, alert: Alert) -> None:
        """Accept an alert without blocking (queue it)."""

    def deliver_now(self, alert: Alert, timeout_s: float) -> str | None:
        """Deliver one alert at once, without retries: None when delivered, else why not."""


def make_test_alert(camera: str) -> Alert:
    """A clearly marked test alert (`hazardwatch alert test`): type "test", class
    `hazardwatch_test_alert`, severity info, an id that starts with "test-"."""
    now = datetime.now(UTC)
    record = EventRecord(
        uuid=f"test-{uuid.uuid4()}",
        camera=camera,
        class_name=TEST_CLASS,
        severity="info",
        status="closed",
        started_at=now,
        peak_at=now,
        peak_score=0.0,
        mean_score=0.0,
        ended_at=now,
        model_name="hazardwatch alert test",
    )
    return Alert("test", None, record, None, None, None)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertPolicy:
    min_severity: Severity = "warning"
    cooldown_s: float = 60.0
    update_interval_s: float = 10.0


class AlertDispatcher:
    """Turns stored event updates into alerts for every configured channel."""

    def __init__(
        self,
        policy: AlertPolicy,
        channels: list[AlertChannel],
        *,
        public_url: str | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        signer: MediaSigner | None = None,
        clips: bool = True,
    ) -> None:
        """`signer`: signs media links when the API needs a token (receivers have none);
        `clips`: whether events get clips (else an `end` alert carries no clip link)."""
        self.policy = policy
        self.channels = channels
        self.public_url = public_url.rstrip("/") if public_url else None
        self.signer = signer or MediaSigner(None)
        self.metrics = metrics
        self._clock = clock
        self._last_new: dict[tuple[str, str], float] = {}
        self._alerted: dict[str, EventRecord] = {}  # open events whose start was alerted
        self._last_update: dict[str, float] = {}
        # Ended events whose start was alerted and whose clip is still to come.
        self._awaiting_clip: OrderedDict[str, None] = OrderedDict()
        self.clips = clips
        self.suppressed = 0

    def __call__(self, update: EventUpdate) -> None:
        if update.resumed and update.record.uuid not in self._alerted:
            self._adopt(update.record, self._clock())
            return
        alert = self.decide(update)
        if alert is None:
            return
        for channel in self.channels:
            try:
                channel.send(alert)
            except Exception:
                log.exception("alert channel %s refused an alert", channel.name)

    def decide(self, update: EventUpdate) -> Alert | None:
        record = update.record
        kind = _TYPES.get(update.kind)
        if kind is None:
            return None
        now = self._clock()
        before = self._alerted.get(record.uuid)
        if kind == "new":
            if not self._severe(record):
                return None
            key = (record.camera, record.class_name)
            last = self._last_new.get(key)
            if last is not None and now - last < self.policy.cooldown_s:
                self._suppress()
                return None
            self._last_new[key] = now
            self._last_update[record.uuid] = now
        elif before is None:
            return None  # its start was not alerted (severity, cooldown)
        elif kind == "update":
            if now - self._last_update.get(record.uuid, 0.0) < self.policy.update_interval_s:
                return None
            self._last_update[record.uuid] = now
        if kind == "end":
            self._alerted.pop(record.uuid, None)
            self._last_update.pop(record.uuid, None)
            if self.clips and not record.clip_path:
                self._awaiting_clip[record.uuid] = None
                while len(self._awaiting_clip) > MAX_AWAITING_CLIPS:
                    self._awaiting_clip.popitem(last=False)
        else:
            self._alerted[record.uuid] = record
        return Alert(
            kind,
            before,
            record,
            update.latency_from,
            self._url(record, "snapshot.jpg") if record.snapshot_path else None,
            # Cut at the end: until it is stored the link answers 202 with Retry-After.
            self._url(record, "clip.mp4") if kind == "end" and self.clips else None,
        )

    def clip_ready(self, record: EventRecord) -> None:
        """The event's clip is stored: `clip_ready` to every channel that heard its end."""
        if record.uuid not in self._awaiting_clip:
            return
        del self._awaiting_clip[record.uuid]
        alert = Alert(
            "clip_ready",
            None,
            record,
            None,
            self._url(record, "snapshot.jpg") if record.snapshot_path else None,
            self._url(record, "clip.mp4"),
        )
        for channel in self.channels:
            try:
                channel.send(alert)
            except Exception:
                log.exception("alert channel %s refused an alert", channel.name)

    def _adopt(self, record: EventRecord, now: float) -> None:
        """An event continued from an earlier run, which alerted its start: no second
        "new"; its end is alerted as ever."""
        if self._severe(record):
            self._alerted[record.uuid] = record
            self._last_update[record.uuid] = now
            self._last_new[(record.camera, record.class_name)] = now

    def _severe(self, record: EventRecord) -> bool:
        return SEVERITIES.index(record.severity) >= SEVERITIES.index(self.policy.min_severity)

    def _url(self, record: EventRecord, leaf: str) -> str | None:
        if self.public_url is None:
            return None
        return self.public_url + self.signer.link(f"/api/v1/events/{record.uuid}/{leaf}")

    def _suppress(self) -> None:
        self.suppressed += 1
        if self.metrics is not None:
            for channel in self.channels:
                self.metrics.alerts.labels(channel.name, "suppressed").inc()
