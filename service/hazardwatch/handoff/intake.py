"""The events service's intake: scored frames from the broker, back in capture order per
camera (`reorder.py`), into the detector stage; each acked once what the stage made of it
(events, score rows, camera states) is stored or spooled, so an events service killed at
any point loses nothing the broker forgot: the unacked frames come again after a restart
(and their score rows, already written or not, are stored once)."""

from __future__ import annotations

import collections
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from hazardwatch.handoff.queue import Delivery
from hazardwatch.handoff.reorder import ReorderBuffer
from hazardwatch.handoff.scores import ScoresSource
from hazardwatch.lifecycle import Periodic
from hazardwatch.records import ScoredFrame

log = logging.getLogger(__name__)
LOST_LOG_INTERVAL_S = 60.0  # a line per camera at most this often; the metric counts all
# A hand-off number missing after a later one was handed on counts as lost only once it
# has not come for this long: until then it may still arrive (late for the window).
LOST_GRACE_S = 30.0
MAX_MISSING = 10_000  # per camera; numbers missing beyond it count as lost at once


class Stored(Protocol):
    """Where the stage's output goes (the event writer): a mark for what was put so far,
    and whether everything up to a mark is stored."""

    def mark(self) -> int: ...

    def durable(self, mark: int) -> bool: ...


class ScoresConsumer(Periodic):
    """One thread: fetch, hold in the reorder window, hand on in order, ack once stored
    (start, stop, then `settle` after the writer has drained)."""

    def __init__(
        self,
        source: ScoresSource,
        on_scored: Callable[[list[ScoredFrame]], None],
        reorder_window_s: float = 0.5,
        batch: int = 64,
        *,
        stored: Stored | None = None,
        may_consume: Callable[[], bool] | None = None,
    ) -> None:
        """`may_consume`: asked before each fetch; False (this instance's lease on the
        scores is not current) holds everything still."""
        self.source = source
        self.may_consume = may_consume
        self.on_scored = on_scored
        self.batch = batch
        self.stored = stored
        self._unacked: deque[tuple[int, list[Delivery[ScoredFrame]]]] = deque()
        self._window: ReorderBuffer[Delivery[ScoredFrame]] = ReorderBuffer(
            reorder_window_s,
            lambda d: d.item.gated.frame.camera,
            lambda d: (d.item.gated.frame.timestamp, d.item.gated.frame.seq),
            lambda d: d.item.gated.handoff_seq,
        )
        super().__init__(0.0, "scores-consumer")  # back to back: the fetch waits
        self.frames = 0
        # Per camera: the last hand-off number handed on, the numbers missing before it
        # (with when they were noticed), and the frames counted lost: expired in the
        # broker unscored (no worker in time), dropped by a worker as stale or malformed,
        # or dropped by a full capture buffer. A missing frame that arrives after a later
        # one left the window is counted late instead, never both.
        self._last_number: dict[str, int] = {}
        self._missing: dict[str, dict[int, float]] = {}
        self.lost_by_camera: collections.Counter[str] = collections.Counter()
        self.late_by_camera: collections.Counter[str] = collections.Counter()
        self.frames_by_camera: collections.Counter[str] = collections.Counter()
        self._warned_at: dict[str, float] = {}

    @property
    def late(self) -> int:
        return self._window.late

    @property
    def lost(self) -> int:
        return sum(self.lost_by_camera.values())

    def settle(self) -> int:
        """Ack what is stored by now (after the writer drained, at shutdown); returns how
        many deliveries stay unacked (the broker gives them to the next start)."""
        self._ack_stored()
        return sum(len(deliveries) for _, deliveries in self._unacked)

    def tick(self) -> None:
        if self.may_consume is not None and not self.may_consume():
            time.sleep(0.1)  # the lease's keeper decides; nothing is fetched or handed on
            return
        for delivery in self.source.fetch(self.batch, 0.2):
            if not self._window.push(delivery, time.monotonic()):
                self._late(delivery.item)
                delivery.ack()  # too late for the detector: counted, never again
        self._hand_on(self._window.due(time.monotonic()))
        self._ack_stored()
        self._expire_missing(time.monotonic())

    def finish(self) -> None:
        """Stopped: hand on what the window holds, ack what is stored; numbers still
        missing count as lost now, so the exit summary and the metric agree."""
        self._hand_on(self._window.drain())
        self._ack_stored()
        self._expire_missing(float("inf"))

    def _late(self, scored: ScoredFrame) -> None:
        camera, number = scored.gated.frame.camera, scored.gated.handoff_seq
        self.late_by_camera[camera] += 1
        self._missing.get(camera, {}).pop(number, None)

    def _expire_missing(self, now: float) -> None:
        for camera, missing in self._missing.items():
            expired = [n for n, noticed in missing.items() if now - noticed >= LOST_GRACE_S]
            if not expired:
                continue
            for number in expired:
                del missing[number]
            self._count_lost(camera, len(expired))

    def _count_lost(self, camera: str, count: int) -> None:
        self.lost_by_camera[camera] += count
        now = time.monotonic()
        if now - self._warned_at.get(camera, -LOST_LOG_INTERVAL_S) >= LOST_LOG_INTERVAL_S:
            self._warned_at[camera] = now
            log.warning(
                "camera %s: %d frame(s) lost so far between capture and the events service "
                "(expired unscored, or dropped as stale); see hazardwatch_frames_lost_total",
                camera,
                self.lost_by_camera[camera],
            )

    def _hand_on(self, deliveries: list[Delivery[ScoredFrame]]) -> None:
        if not deliveries:
            return
        self._count_gaps(deliveries)
        try:
            self.on_scored([d.item for d in deliveries])
        except Exception:  # the detector's fault, not the frames': no second delivery
            log.exception("handling %d scored frames failed", len(deliveries))
        self.frames += len(deliveries)
        self._unacked.append((self.stored.mark() if self.stored else 0, deliveries))

    def _count_gaps(self, deliveries: list[Delivery[ScoredFrame]]) -> None:
        now = time.monotonic()
        for delivery in deliveries:
            gated = delivery.item.gated
            camera, number = gated.frame.camera, gated.handoff_seq
            self.frames_by_camera[camera] += 1
            if not number:
                continue
            last = self._last_number.get(camera)
            if last is not None and number > last + 1:
                missing = self._missing.setdefault(camera, {})
                gap = range(last + 1, number)
                room = max(0, MAX_MISSING - len(missing))
                for skipped in gap[-room:] if room else ():
                    missing[skipped] = now
                if len(gap) > room:
                    self._count_lost(camera, len(gap) - room)
            # A lower number: the capture node restarted and numbers from 1 again.
            self._last_number[camera] = number

    def _ack_stored(self) -> None:
        while self._unacked and (self.stored is None or self.stored.durable(self._unacked[0][0])):
            for delivery in self._unacked.popleft()[1]:
                delivery.ack()
