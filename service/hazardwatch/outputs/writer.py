"""The event writer: stores events, snapshots and score samples off the scoring thread.

Snapshots are written before the event row that names them. A failed database write is
retried with backoff and never dropped while the writer runs (the durable spool for long
outages comes with the fault-tolerance work).
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from pathlib import Path

import cv2
import sqlalchemy as sa

from hazardwatch.detect.stage import EventUpdate
from hazardwatch.records import ScoreSample
from hazardwatch.storage.repository import Repository

log = logging.getLogger(__name__)
_STOP = object()


class EventWriter:
    def __init__(self, repository: Repository, media_dir: Path, jpeg_quality: int = 85) -> None:
        self.repository = repository
        self.media_dir = media_dir
        self.jpeg_quality = jpeg_quality
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self.events_written = 0
        self.scores_written = 0
        self.write_failures = 0
        # Recent capture→stored latencies; bounded, a long run must not grow memory.
        self.latencies_s: deque[float] = deque(maxlen=10_000)
        self._snapshots: dict[str, str] = {}

    def start(self) -> None:
        self._thread.start()

    def put_event(self, update: EventUpdate) -> None:
        self._queue.put(update)

    def put_scores(self, samples: list[ScoreSample]) -> None:
        self._queue.put(samples)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def close(self, timeout: float | None = 30.0) -> bool:
        """Write everything queued, then stop; True when drained in time."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            self._with_retry(item)

    def _with_retry(self, item: object) -> None:
        delay = 0.2
        while True:
            try:
                if isinstance(item, EventUpdate):
                    self._write_event(item)
                elif isinstance(item, list):
                    self.repository.add_scores(item)
                    self.scores_written += len(item)
                return
            except sa.exc.SQLAlchemyError as exc:
                self.write_failures += 1
                log.warning(
                    "database write failed (%s); retrying in %.1f s", type(exc).__name__, delay
                )
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            except Exception:
                log.exception("writing %s failed; skipped", type(item).__name__)
                return

    def _write_event(self, update: EventUpdate) -> None:
        record = update.record
        path = self._snapshots.get(record.uuid)
        if update.snapshot is not None:  # the peak frame so far (started, new peak, ended)
            path = self._write_snapshot(update) or path
        if path is not None:
            self._snapshots[record.uuid] = path
            record = dataclasses.replace(record, snapshot_path=path)
        self.repository.upsert_event(record)
        self.events_written += 1
        if update.latency_from is not None:
            self.latencies_s.append(time.monotonic() - update.latency_from)
        if update.kind == "ended":
            self._snapshots.pop(record.uuid, None)

    def _write_snapshot(self, update: EventUpdate) -> str | None:
        """The peak frame as JPEG at <media>/<camera>/<uuid>.jpg; the path relative to media."""
        if update.snapshot is None:
            return None
        relative = Path(update.record.camera) / f"{update.record.uuid}.jpg"
        target = self.media_dir / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            ok, data = cv2.imencode(
                ".jpg", update.snapshot, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
            )
            if not ok:
                raise OSError("JPEG encoding failed")
            tmp = target.with_suffix(".jpg.tmp")
            tmp.write_bytes(data.tobytes())
            tmp.replace(target)
        except OSError as exc:
            log.error("snapshot for event %s not written: %s", update.record.uuid, exc)
            return None
        return relative.as_posix()
