"""The events service's intake: scored frames from the broker, back in capture order per
camera (`reorder.py`), into the detector stage; each acked once the stage has it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from hazardwatch.handoff.jetstream import ScoresSource
from hazardwatch.handoff.queue import Delivery
from hazardwatch.handoff.reorder import ReorderBuffer
from hazardwatch.records import ScoredFrame

log = logging.getLogger(__name__)


class ScoresConsumer:
    """One thread: fetch, hold in the reorder window, hand on in order, ack (start, stop)."""

    def __init__(
        self,
        source: ScoresSource,
        on_scored: Callable[[list[ScoredFrame]], None],
        reorder_window_s: float = 0.5,
        batch: int = 64,
    ) -> None:
        self.source = source
        self.on_scored = on_scored
        self.batch = batch
        self._window: ReorderBuffer[Delivery[ScoredFrame]] = ReorderBuffer(
            reorder_window_s,
            lambda d: d.item.gated.frame.camera,
            lambda d: (d.item.gated.frame.timestamp, d.item.gated.frame.seq),
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scores-consumer", daemon=True)
        self.frames = 0

    @property
    def late(self) -> int:
        return self._window.late

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop fetching, hand on what the window holds, ack it."""
        self._stop.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            for delivery in self.source.fetch(self.batch, 0.2):
                if not self._window.push(delivery, time.monotonic()):
                    delivery.ack()  # too late for the detector: counted, never again
            self._hand_on(self._window.due(time.monotonic()))
        self._hand_on(self._window.drain())

    def _hand_on(self, deliveries: list[Delivery[ScoredFrame]]) -> None:
        if not deliveries:
            return
        try:
            self.on_scored([d.item for d in deliveries])
        except Exception:  # the detector's fault, not the frames': no second delivery
            log.exception("handling %d scored frames failed", len(deliveries))
        for delivery in deliveries:
            delivery.ack()
        self.frames += len(deliveries)
