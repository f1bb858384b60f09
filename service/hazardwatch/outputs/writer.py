"""The event writer: stores events, snapshots and score samples off the scoring thread.

Snapshots are written before the event row that names them. A write the database refuses
goes to the durable spool and the writer moves on; while the spool holds anything, new
writes queue behind it so the order is kept, and the spool is replayed as soon as the
database answers again. Listeners (alerts, clips) hear of each event once it is durable —
stored or spooled — so an outage never delays an alert.

The queue in front of the database is bounded (`max_backlog`, `storage.writer_backlog`): a
database that is up but slower than the writes must not grow memory without limit. At the
bound, score samples (a dashboard series) are dropped and counted (`dropped_scores`);
everything else (events, clips, camera states, weather) waits for room, so the producer —
the detector stage, hence scoring or the broker's acks — slows to the database's pace, and
nothing an operator reviews is lost. A wait is logged once per `BLOCKED_LOG_S`. Score
samples queued back to back are written in one transaction (up to `MAX_SCORES_A_WRITE`
rows), the order of everything else kept.

In the events role, the writer stores only while this instance's leases on the scores are
current (`may_write`). An instance paused past its leases (SIGSTOP, a stalled VM) runs
again with writes queued from before the pause; another instance may own its cameras by
then, so from the first one it finds not current the writer stores nothing more, tells no
listener, and marks nothing durable: those frames are never acked, and the new owner gets
them again. A pause between that question and the commit is caught by the database: each
event and camera-state write carries its partition's fencing token (`fence_of`,
storage/fences.py) and is refused (`FencedError`) once another instance has drawn a newer one;
it is then handled as above. What was spooled before (already acked, this instance's to
store) is replayed without a token.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import cast

import cv2
import sqlalchemy as sa

from hazardwatch.metrics import Metrics
from hazardwatch.records import (
    CameraStateRecord,
    ClipLink,
    EventRecord,
    EventUpdate,
    KeyframeBatch,
    KeyframeShot,
    ScoreSample,
    WeatherLink,
)
from hazardwatch.storage.fences import Fence, FencedError
from hazardwatch.storage.repository import Repository
from hazardwatch.storage.spool import Item, Spool

log = logging.getLogger(__name__)
_STOP = object()
EventListener = Callable[[EventUpdate], None]
# Hears each batch of keyframes once stored, with their ids (the search index).
KeyframeListener = Callable[[list[int], KeyframeBatch], None]
BLOCKED_LOG_S = 60.0
# Score samples queued back to back are written together, up to this many rows.
MAX_SCORES_A_WRITE = 5000


def _is_scores(item: object) -> bool:
    return isinstance(item, list) and bool(item) and isinstance(item[0], ScoreSample)


def _log_event(update: EventUpdate) -> None:
    """One line when an event starts and one when it ends (updates stay quiet)."""
    r = update.record
    if update.kind == "started":
        log.info(
            "event %s started: camera %s, %s (%s), score %.2f",
            r.uuid,
            r.camera,
            r.class_name,
            r.severity,
            r.peak_score,
        )
    elif update.kind == "ended" and r.ended_at is not None:
        log.info(
            "event %s ended: camera %s, %s, %.1f s, peak %.2f",
            r.uuid,
            r.camera,
            r.class_name,
            (r.ended_at - r.started_at).total_seconds(),
            r.peak_score,
        )


class EventWriter:
    def __init__(
        self,
        repository: Repository,
        media_dir: Path,
        jpeg_quality: int = 85,
        *,
        spool: Spool | None = None,
        metrics: Metrics | None = None,
        retry_interval_s: float = 2.0,
        max_backlog: int = 10_000,
    ) -> None:
        if max_backlog < 1:
            raise ValueError("max_backlog must be >= 1")
        self.repository = repository
        self.media_dir = media_dir
        self.jpeg_quality = jpeg_quality
        self.spool = spool
        self.metrics = metrics
        self.retry_interval_s = retry_interval_s
        self.listeners: list[EventListener] = []
        # Hear each event whose clip was just linked (the `clip_ready` alert; the clip
        # recorder stops answering "still being cut" for it).
        self.clip_listeners: list[Callable[[EventRecord], None]] = []
        self.keyframe_listeners: list[KeyframeListener] = []
        self._queue: queue.Queue[object] = queue.Queue(maxsize=max_backlog)
        self.dropped_scores = 0
        self.dropped_keyframes = 0
        self.keyframes_written = 0
        self._blocked_logged = -math.inf
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self.events_written = 0
        self.scores_written = 0
        self.write_failures = 0
        self.database_up = True
        # Recent capture→stored latencies; bounded, a long run must not grow memory.
        self.latencies_s: deque[float] = deque(maxlen=10_000)
        self._snapshots: dict[str, str] = {}
        self._open: set[str] = set()
        self._states_refused: set[str] = set()  # warned once per camera, not every minute
        self._next_replay = 0.0
        # Items taken and items finished (stored, spooled, or failed and logged): the
        # queue is FIFO with one consumer, so finished >= a mark means done up to it.
        self._taken = 0
        self._finished = 0
        self._count_lock = threading.Lock()
        # The events role: whether this instance's leases are current (see the module).
        self.may_write: Callable[[], bool] | None = None
        # The events role: a camera's partition and this instance's token for it.
        self.fence_of: Callable[[str], Fence | None] | None = None
        self.fenced = False

    def start(self) -> None:
        self._thread.start()

    @property
    def max_backlog(self) -> int:
        return self._queue.maxsize

    def _put(self, item: object) -> None:
        """Queue an item, waiting for room while the queue is full (see the module)."""
        while True:
            with self._count_lock:
                try:
                    self._queue.put_nowait(item)
                except queue.Full:
                    pass
                else:
                    self._taken += 1
                    return
            self._note_full()
            time.sleep(0.01)

    def _note_full(self) -> None:
        now = time.monotonic()
        if now - self._blocked_logged >= BLOCKED_LOG_S:
            self._blocked_logged = now
            log.warning(
                "event writer: %d writes queued (storage.writer_backlog), the database is "
                "slower than the writes; events wait for room and score samples are dropped",
                self._queue.maxsize,
            )

    def put_event(self, update: EventUpdate) -> None:
        self._put(update)

    def put_scores(self, samples: list[ScoreSample]) -> None:
        """Score samples, dropped (and counted) rather than waited for when the queue is full."""
        with self._count_lock:
            try:
                self._queue.put_nowait(samples)
            except queue.Full:
                self.dropped_scores += len(samples)
            else:
                self._taken += 1
                return
        self._note_full()

    def put_keyframes(self, shots: list[KeyframeShot]) -> None:
        """Keyframes for search, dropped (and counted) like score samples when the queue is
        full: a gap in search, never a wait for the scoring thread."""
        with self._count_lock:
            try:
                self._queue.put_nowait(shots)
            except queue.Full:
                self.dropped_keyframes += len(shots)
                if self.metrics is not None:
                    self.metrics.keyframes_dropped.inc(len(shots))
            else:
                self._taken += 1
                return
        self._note_full()

    def put_clip(self, clip: ClipLink) -> None:
        self._put(clip)

    def put_weather(self, link: WeatherLink) -> None:
        """Weather that arrived after its event was written (spooled in an outage)."""
        self._put(link)

    def put_state(self, state: CameraStateRecord) -> None:
        """A camera's learned normal, stored off the scoring thread (spooled in an outage)."""
        self._put(state)

    def mark(self) -> int:
        """A mark for everything put so far; `durable(mark)` says when it is all stored
        or spooled — the events service acknowledges the broker's messages only then."""
        with self._count_lock:
            return self._taken

    def durable(self, mark: int) -> bool:
        return self._finished >= mark

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    @property
    def spooled(self) -> int:
        return len(self.spool) if self.spool is not None else 0

    @property
    def open_events(self) -> int:
        return len(self._open)

    def stop(self, timeout: float = 30.0) -> bool:
        """Write everything queued, then stop; True when drained in time.

        What the database would not take stays in the spool for the next start.
        """
        deadline = time.monotonic() + timeout
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:  # the thread is not draining: never started, or stuck
            return False
        self._thread.join(max(deadline - time.monotonic(), 0.0))
        return not self._thread.is_alive()

    def replay(self) -> int:
        """Store what the spool holds, oldest first; returns how many items were stored."""
        if self.spool is None:
            return 0
        stored = 0
        while len(self.spool):
            batch = self.spool.peek(200)
            if not batch:
                break
            done: list[int] = []
            try:
                for row_id, item in batch:
                    self._store(item, fenced=False)  # acked already: this instance's to store
                    done.append(row_id)
            except sa.exc.SQLAlchemyError as exc:
                self._failed(exc)
                return stored + len(done)
            finally:
                self.spool.remove(done)
            stored += len(done)
        if stored:
            log.info("spool replayed: %d item(s) stored", stored)
        self.database_up = True
        return stored

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        held: object = None  # taken from the queue behind score samples: handled next
        while True:
            if held is not None:
                item, held = held, None
            else:
                try:
                    item = self._queue.get(timeout=self.retry_interval_s)
                except queue.Empty:
                    self._maybe_replay()
                    continue
            if item is _STOP:
                if not self.fenced:
                    self._maybe_replay(force=True)
                return
            if self._refused():
                continue  # not stored, not finished: never acked, delivered to the next owner
            taken = 1
            if _is_scores(item):
                item, taken, held = self._more_scores(cast(list[ScoreSample], item))
            try:
                self._handle(item)
            except FencedError as exc:
                if self._taken_over(exc):
                    continue  # as refused above
            except Exception:
                log.exception("writing %s failed; skipped", type(item).__name__)
            self._finished += taken

    def _taken_over(self, exc: FencedError) -> bool:
        """A write refused by its partition's token: this instance lost the partition
        (True: nothing more is written), or, its leases all current, the write was one
        left over for a partition it gave back (dropped: the next owner has it)."""
        if self._lease_lost(str(exc)):
            return True
        log.warning("event writer: %s; dropped, the partition's owner has it", exc)
        return False

    def _refused(self) -> bool:
        return self.fenced or self._lease_lost(
            "this instance's lease on the scores is no longer current"
        )

    def _lease_lost(self, why: str) -> bool:
        """Whether a lease of this instance is not current; the first time, from here on
        nothing more is written."""
        if self.may_write is None or self.may_write():
            return False
        self.fenced = True
        log.critical(
            "event writer: %s; nothing more is written (the next owner gets these frames again)",
            why,
        )
        return True

    def _more_scores(self, samples: list[ScoreSample]) -> tuple[list[ScoreSample], int, object]:
        """The score samples queued right behind these, in one write: with a thousand
        cameras the events service puts a few frames' samples at a time, and one
        transaction each cost more than the rows. Returns the samples, how many queued
        items they were, and the first other item taken (handled next, in order)."""
        merged, taken = list(samples), 1
        while len(merged) < MAX_SCORES_A_WRITE:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return merged, taken, None
            if not _is_scores(item):
                return merged, taken, item
            merged.extend(cast(list[ScoreSample], item))
            taken += 1
        return merged, taken, None

    def _maybe_replay(self, force: bool = False) -> None:
        if self.spool is None or not len(self.spool) or self.fenced:
            return
        now = time.monotonic()
        if force or now >= self._next_replay:
            self._next_replay = now + self.retry_interval_s
            self.replay()

    def _handle(self, item: object) -> None:
        if isinstance(item, EventUpdate):
            update = self._with_snapshot(item)
            self._persist(update.record)
            _log_event(update)
            if update.kind == "started" and self.metrics is not None:
                r = update.record
                self.metrics.events.labels(r.camera, r.class_name, r.severity).inc()
            if update.latency_from is not None:
                latency = time.time() - update.latency_from
                self.latencies_s.append(latency)
                if self.metrics is not None:
                    self.metrics.event_latency_seconds.observe(latency)
            for listener in self.listeners:
                try:
                    listener(update)
                except Exception:
                    log.exception("event listener %r failed", listener)
        elif isinstance(item, list) and item and isinstance(item[0], KeyframeShot):
            batch = self._with_thumbnails(item)
            if batch.records:
                self._persist(batch)
        elif isinstance(item, list | ClipLink | CameraStateRecord | WeatherLink):
            self._persist(item)

    def _persist(self, item: Item) -> None:
        """Store now, or spool when the database is down or older writes still wait."""
        self._maybe_replay()
        if self.spool is not None and len(self.spool):
            self.spool.push(item)
            return
        try:
            self._store(item)
        except sa.exc.SQLAlchemyError as exc:
            self._failed(exc)
            if self.spool is None:
                raise
            self.spool.push(item)

    def _store(self, item: Item, fenced: bool = True) -> None:
        started = time.perf_counter()
        if isinstance(item, EventRecord):
            self.repository.upsert_event(item, self._fence(item.camera, fenced))
            self.events_written += 1
        elif isinstance(item, ClipLink):
            if not self.repository.set_clip_path(item.uuid, item.clip_path):
                log.warning("clip %s has no stored event %s; not linked", item.clip_path, item.uuid)
            else:
                self._clip_linked(item.uuid)
            with contextlib.suppress(OSError):
                self._media_written((self.media_dir / item.clip_path).stat().st_size)
        elif isinstance(item, CameraStateRecord):
            # Its calibration time goes with it: the repository keeps a state calibrated later
            # (beside the running service), and without this every save of a calibrated
            # camera looked older than what it had loaded and was refused.
            stored = self.repository.save_camera_state(
                item.camera, item.state, item.source, item.references, item.calibrated_at,
                fence=self._fence(item.camera, fenced),
            )  # fmt: skip
            if not stored and item.camera not in self._states_refused:
                self._states_refused.add(item.camera)
                log.warning(
                    "camera %s: learned state not saved: a newer calibration is stored; "
                    "restart to load it",
                    item.camera,
                )
        elif isinstance(item, WeatherLink):
            if not self.repository.set_weather(item.uuid, item.weather):
                log.warning("weather for event %s: no such stored event; dropped", item.uuid)
        elif isinstance(item, KeyframeBatch):
            self._store_keyframes(item)
        else:
            self.repository.add_scores(item)
            self.scores_written += len(item)
        if self.metrics is not None:
            self.metrics.db_write_seconds.observe(time.perf_counter() - started)
        self.database_up = True

    def _fence(self, camera: str, fenced: bool) -> Fence | None:
        """The token the write of `camera` carries (None: unfenced, or not the events role)."""
        return self.fence_of(camera) if fenced and self.fence_of is not None else None

    def _store_keyframes(self, batch: KeyframeBatch) -> None:
        ids = self.repository.keyframes.add(batch.records)
        self.keyframes_written += len(ids)
        for listener in self.keyframe_listeners:
            try:
                listener(ids, batch)
            except Exception:
                log.exception("keyframe listener %r failed", listener)

    def _clip_linked(self, uuid: str) -> None:
        if not self.clip_listeners:
            return
        record = self.repository.get_event(uuid)
        if record is None:
            return
        for listener in self.clip_listeners:
            try:
                listener(record)
            except Exception:
                log.exception("clip listener %r failed", listener)

    def _media_written(self, size: int) -> None:
        """hazardwatch_media_bytes grows as media is written; each retention sweep resets it
        to the exact total."""
        if self.metrics is not None:
            self.metrics.media_bytes.inc(size)

    def _failed(self, exc: Exception) -> None:
        self.write_failures += 1
        if self.metrics is not None:
            self.metrics.db_write_failures.inc()
        if self.database_up:
            log.warning("database write failed (%s); spooling until it is back", type(exc).__name__)
        self.database_up = False
        self._next_replay = time.monotonic() + self.retry_interval_s

    def _with_snapshot(self, update: EventUpdate) -> EventUpdate:
        record = update.record
        path = self._snapshots.get(record.uuid)
        if update.snapshot is not None:  # the peak frame so far (started, new peak, ended)
            path = self._write_snapshot(update) or path
        if update.kind == "ended":
            self._snapshots.pop(record.uuid, None)
            self._open.discard(record.uuid)
        else:
            self._open.add(record.uuid)
            if path is not None:
                self._snapshots[record.uuid] = path
        if path is not None:
            record = dataclasses.replace(record, snapshot_path=path)
        return dataclasses.replace(update, record=record)

    def _with_thumbnails(self, shots: list[KeyframeShot]) -> KeyframeBatch:
        """Each keyframe's thumbnail on disk, then the rows that name them; a keyframe
        whose thumbnail cannot be written is dropped (and logged), never stored without it."""
        kept = []
        for shot in shots:
            try:
                self._write_media(shot.record.thumbnail_path, shot.jpeg)
            except OSError as exc:
                log.error("keyframe %s not kept: %s", shot.record.thumbnail_path, exc)
                self.dropped_keyframes += 1
                if self.metrics is not None:
                    self.metrics.keyframes_dropped.inc()
                continue
            self._media_written(len(shot.jpeg))
            kept.append(shot.record)
        return KeyframeBatch(tuple(kept))

    def _write_media(self, relative: str, data: bytes) -> None:
        """`data` at `relative` in the media dir, whole or not at all (written aside,
        then renamed); OSError when it cannot be."""
        target = self.media_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)

    def _write_snapshot(self, update: EventUpdate) -> str | None:
        """The peak frame as JPEG at <media>/<camera>/<uuid>.jpg; the path relative to media."""
        if update.snapshot is None:
            return None
        relative = Path(update.record.camera) / f"{update.record.uuid}.jpg"
        try:
            ok, data = cv2.imencode(
                ".jpg", update.snapshot, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
            )
            if not ok:
                raise OSError("JPEG encoding failed")
            self._write_media(relative.as_posix(), data.tobytes())
            self._media_written(len(data))
        except OSError as exc:
            log.error("snapshot for event %s not written: %s", update.record.uuid, exc)
            return None
        return relative.as_posix()
