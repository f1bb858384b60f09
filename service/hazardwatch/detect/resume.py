"""Events a previous run left open (it was killed), and how this run takes them over.

A camera's first frame here builds its detector from the saved state: each class goes on
from its checkpoint (its statistic) and with the event stored open for it, under the same
uuid (`take`), so an open event continues without being decided again. Otherwise, when
the detector starts an event of the same camera and class within `RESUME_WINDOW_S`
of what was stored of it, or of this start (the broker delivering the unacked frames
again, or a camera whose hazard is still in view), that event continues the stored one —
same uuid, start and alert — instead of adding a second row. Those not continued by then
are closed as interrupted; of two left open for one camera and class (rare) the older is
closed at once.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal

from hazardwatch.detect.channel import OpenEvent
from hazardwatch.detect.detector import DetectionEvent
from hazardwatch.records import EventRecord, EventUpdate, Image

log = logging.getLogger(__name__)
RESUME_WINDOW_S = 60.0


class LeftOpen:
    """The stored open events, by (camera, class), until continued or closed; and the
    detector events that continue one, by detector event id. Not thread-safe: the
    detector stage calls it under its lock."""

    def __init__(
        self,
        records: Sequence[EventRecord],
        emit_event: Callable[[EventUpdate], None],
        seen: Mapping[str, float] | None = None,
    ) -> None:
        self._emit_event = emit_event
        self._open: dict[tuple[str, str], EventRecord] = {}
        self._superseded: list[EventRecord] = []
        self._continues: dict[str, EventRecord] = {}
        # Per (camera, class): until when (monotonic) it may be continued, and when (wall
        # clock) this run took it: the run that left it open died before that.
        self._until: dict[tuple[str, str], float] = {}
        self._taken_at: dict[tuple[str, str], float] = {}
        self._handed: set[str] = set()  # uuids of events handed over by a live owner
        # By uuid: the camera's last frame its owner saw (its checkpoint), when later than
        # what was stored of the event (its peak).
        self._seen: dict[str, float] = {}
        self.resumed = 0
        self.interrupted = 0
        self.ended = 0  # handed over, and closed at their last stored frame
        self.add(records, seen=seen)

    def add(
        self,
        records: Sequence[EventRecord],
        handed_over: bool = False,
        seen: Mapping[str, float] | None = None,
    ) -> None:
        """Open events taken over now: at the start, or with the cameras of a partition
        this instance took from another (each has its own window from now).
        `handed_over`: the instance that had them gave them over cleanly, everything of
        them stored; one nothing continues ended at its camera's last frame there
        ("closed"), not "interrupted" as one of a run that died. `seen`: by uuid, the
        time of that last frame (the camera's saved checkpoint)."""
        until, now = time.monotonic() + RESUME_WINDOW_S, time.time()
        if handed_over:
            self._handed.update(r.uuid for r in records)
        self._seen.update(seen or {})
        for record in sorted(records, key=lambda r: r.started_at):
            key = (record.camera, record.class_name)
            older = self._open.get(key)
            if older is not None and older.uuid != record.uuid:  # not the same one again
                self._superseded.append(older)
            self._open[key] = record
            self._until[key], self._taken_at[key] = until, now

    def take(self, camera: str, classes: Sequence[str], t: float) -> dict[str, OpenEvent]:
        """The camera's open events of `classes` that its first frame (at `t`) may still
        continue, by class: its new detector goes on with each under its uuid (from the
        saved checkpoint, detect/channel.py) rather than waiting to start it again. Each
        is handed on at once as resumed (its start was stored and alerted before)."""
        out: dict[str, OpenEvent] = {}
        for cls in classes:
            record = self._open.get((camera, cls))
            if record is None or t > self._deadline(record):
                continue  # past its window: `frame` closes it
            del self._open[(camera, cls)]
            self._seen.pop(record.uuid, None)
            record = dataclasses.replace(record, revision=record.revision + 1)
            self._continues[record.uuid] = record
            self.resumed += 1
            log.info(
                "event %s (%s on camera %s) left open goes on from the saved detector state",
                record.uuid,
                cls,
                camera,
            )
            try:
                self._emit_event(EventUpdate("updated", record, None, None, resumed=True))
            except Exception:
                log.exception("event %s could not be handed to the writer", record.uuid)
            out[cls] = OpenEvent(
                event_id=record.uuid,
                started_at=record.started_at.timestamp(),
                peak_score=record.peak_score,
                peak_at=record.peak_at.timestamp(),
                mean_score=record.mean_score,
                opened_by=(record.opened_statistic or 0.0, record.opened_threshold or 0.0),
            )
        return out

    def forget(self, belongs: Callable[[str], bool]) -> None:
        """The cameras `belongs` names went to another instance with their open events:
        that one continues or closes them, not this one."""
        for key in [k for k in self._open if belongs(k[0])]:
            self._seen.pop(self._open.pop(key).uuid, None)
        self._superseded = [r for r in self._superseded if not belongs(r.camera)]
        for event_id in [i for i, r in self._continues.items() if belongs(r.camera)]:
            del self._continues[event_id]

    def __bool__(self) -> bool:
        return bool(self._open or self._superseded)

    def frame(self, camera: str, t: float) -> None:
        """Frames of the camera at `t`: what they have gone past can no longer continue."""
        self._interrupt(
            [
                record
                for (cam, _), record in self._open.items()
                if cam == camera and t > self._deadline(record)
            ]
        )

    def expire(self) -> None:
        """The superseded at once; the rest once `RESUME_WINDOW_S` has passed since the
        start (a camera that never came back)."""
        self._interrupt(self._superseded)
        now = time.monotonic()
        self._interrupt([r for key, r in self._open.items() if now >= self._until[key]])

    def close_all(self) -> None:
        """Shutdown: whatever no frame continued is closed as interrupted."""
        self._interrupt([*self._superseded, *self._open.values()])

    def continued(self, event: DetectionEvent) -> EventRecord | None:
        """The stored event this detector event continues, if any (a start within the
        window takes one over)."""
        if event.kind == "started":
            stored = self._open.get((event.camera, event.channel))
            started = datetime.fromtimestamp(event.started_at, UTC)
            if (
                stored is not None
                and stored.started_at - timedelta(seconds=RESUME_WINDOW_S) <= started
                and event.started_at <= self._deadline(stored)
            ):
                del self._open[(event.camera, event.channel)]
                self._continues[event.event_id] = stored
                self.resumed += 1
                log.info(
                    "event %s (%s on camera %s) left open by an earlier run goes on",
                    stored.uuid,
                    stored.class_name,
                    stored.camera,
                )
        if event.kind == "ended":
            return self._continues.pop(event.event_id, None)
        return self._continues.get(event.event_id)

    def _deadline(self, stored: EventRecord) -> float:
        """The latest frame time at which the event may still be continued: the window
        after what was stored of it, or after this start (the earlier run died between the
        two, and its last frames of the event were never stored)."""
        taken_at = self._taken_at.get((stored.camera, stored.class_name), time.time())
        return max(self._last_known(stored), taken_at) + RESUME_WINDOW_S

    def _last_known(self, record: EventRecord) -> float:
        """The latest frame time known of an event: stored of it, or its camera's last
        frame in the checkpoint its owner saved."""
        return max(_last_known(record), self._seen.get(record.uuid, -math.inf))

    def _interrupt(self, records: list[EventRecord]) -> None:
        for record in list(records):
            key = (record.camera, record.class_name)
            if self._open.get(key) is record:
                del self._open[key]
            elif record in self._superseded:
                self._superseded.remove(record)
            status: Literal["closed", "interrupted"]
            last = self._last_known(record)
            self._seen.pop(record.uuid, None)
            # Handed over: stored up to the hand-over, so it ended where its owner left it.
            if record.uuid in self._handed:
                self.ended += 1
                status, ended = "closed", record.ended_at or utc(last)
                log.info(
                    "event %s (%s on camera %s), handed over open, ended at its camera's "
                    "last frame there: nothing here continued it",
                    record.uuid,
                    record.class_name,
                    record.camera,
                )
            else:
                self.interrupted += 1
                status, ended = "interrupted", record.ended_at or datetime.now(UTC)
                log.warning(
                    "event %s (%s on camera %s) left open by an earlier run was closed as "
                    "interrupted: nothing continued it",
                    record.uuid,
                    record.class_name,
                    record.camera,
                )
            closed = dataclasses.replace(
                record, status=status, ended_at=ended, revision=record.revision + 1
            )
            try:
                self._emit_event(EventUpdate("ended", closed, None, None))
            except Exception:
                log.exception("event %s could not be handed to the writer", record.uuid)


def continuation(
    event: DetectionEvent,
    record: EventRecord,
    stored: EventRecord,
    snapshot: Image | None,
    latency_from: float | None,
) -> EventUpdate:
    """The detector's record as the continuation of `stored`: its uuid, start and the
    higher of the two peaks (the stored snapshot stays when its peak was higher)."""
    merged = dataclasses.replace(
        record,
        uuid=stored.uuid,
        started_at=min(stored.started_at, record.started_at),
        revision=stored.revision + 1 + record.revision,
        weather=stored.weather,
        # What opened the stored event opened this one: the earlier run's decision.
        opened_statistic=_first(stored.opened_statistic, record.opened_statistic),
        opened_threshold=_first(stored.opened_threshold, record.opened_threshold),
    )
    # (Equal: a detector resumed from a checkpoint holds the stored peak without its frame.)
    if stored.peak_score >= record.peak_score:
        merged = dataclasses.replace(
            merged,
            peak_at=stored.peak_at,
            peak_score=stored.peak_score,
            peak_embedding=stored.peak_embedding,
            snapshot_path=stored.snapshot_path,
        )
        snapshot = None
    kind = "updated" if event.kind == "started" else event.kind
    return EventUpdate(kind, merged, snapshot, latency_from, resumed=event.kind == "started")


def _first(*values: float | None) -> float | None:
    return next((v for v in values if v is not None), None)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _last_known(record: EventRecord) -> float:
    """The latest frame time stored of an event (seconds since the epoch)."""
    return max(record.peak_at, record.ended_at or record.peak_at).timestamp()
