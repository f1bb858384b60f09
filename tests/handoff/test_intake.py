"""The events service's intake acknowledges a scored frame only once what the detector
stage made of it is stored: a kill before that leaves it with the broker."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import numpy as np

from hazardwatch.handoff.intake import ScoresConsumer
from hazardwatch.records import Frame, GatedFrame, MotionResult, ScoredFrame
from hazardwatch.scoring.bank import load_bank
from tests.helpers import wait_for

BANK = load_bank(None)
T0 = datetime(2026, 5, 1, tzinfo=UTC)


@dataclass
class FakeDelivery:
    item: ScoredFrame
    attempt: int = 1
    acked: bool = False

    def ack(self) -> None:
        self.acked = True


@dataclass
class FakeSource:
    pending: list[FakeDelivery] = field(default_factory=list)

    def fetch(self, max_items: int, timeout_s: float) -> list[FakeDelivery]:
        out, self.pending = self.pending[:max_items], self.pending[max_items:]
        if not out:
            time.sleep(0.01)
        return out


class Writer:
    """Stands in for the event writer's marks: stores only when told to."""

    def __init__(self) -> None:
        self.put = 0
        self.stored = 0
        self.lock = threading.Lock()

    def on_scored(self, frames: list[ScoredFrame]) -> None:
        with self.lock:
            self.put += len(frames)

    def mark(self) -> int:
        with self.lock:
            return self.put

    def durable(self, mark: int) -> bool:
        return self.stored >= mark


def delivery(seq: int, number: int = 0, camera: str = "gate") -> FakeDelivery:
    frame = Frame(camera, seq, 0.0, T0 + timedelta(seconds=seq), np.zeros((2, 2, 3), np.uint8))
    gated = GatedFrame(frame, MotionResult(True, 0.1, None), "motion", 1, handoff_seq=number)
    return FakeDelivery(ScoredFrame(gated, {}, np.zeros(1, np.float32), BANK))


def test_frames_are_acked_only_once_their_outputs_are_stored() -> None:
    writer = Writer()
    deliveries = [delivery(seq) for seq in range(6)]
    source = FakeSource(list(deliveries))
    consumer = ScoresConsumer(
        cast(Any, source), writer.on_scored, reorder_window_s=0.0, batch=3, stored=writer
    )
    consumer.start()
    try:
        assert wait_for(lambda: writer.put == 6, 5)
        time.sleep(0.1)
        assert not any(d.acked for d in deliveries)  # handed on, not stored yet
        writer.stored = 3  # the first batch is written
        assert wait_for(lambda: all(d.acked for d in deliveries[:3]), 5)
        assert not any(d.acked for d in deliveries[3:])
    finally:
        assert consumer.stop(5)
    assert consumer.settle() == 3  # left to the broker: delivered again at the next start
    writer.stored = 6
    assert consumer.settle() == 0 and all(d.acked for d in deliveries)


def test_frames_missing_between_capture_and_the_detector_are_counted_per_camera() -> None:
    """Hand-off numbers 1-3, then 7 (4-6 expired in the broker), then 1-2 again (the
    capture node restarted): 3 lost for gate; yard, numbered without a gap, none."""
    writer = Writer()
    numbers = [1, 2, 3, 7, 8, 1, 2]
    deliveries = [delivery(i, n) for i, n in enumerate(numbers)]
    deliveries += [delivery(i, i + 1, camera="yard") for i in range(4)]
    consumer = ScoresConsumer(
        cast(Any, FakeSource(list(deliveries))), writer.on_scored, reorder_window_s=0.0
    )
    consumer.start()
    try:
        assert wait_for(lambda: writer.put == len(deliveries), 5)
    finally:
        assert consumer.stop(5)
    assert dict(consumer.lost_by_camera) == {"gate": 3}


class BrokenOnceSource(FakeSource):
    """A source whose first fetch fails in a way nobody foresaw."""

    def __init__(self, pending: list[FakeDelivery]) -> None:
        super().__init__(pending)
        self.failed = False

    def fetch(self, max_items: int, timeout_s: float) -> list[FakeDelivery]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("unforeseen")
        return super().fetch(max_items, timeout_s)


def test_an_unforeseen_failure_does_not_end_the_intake() -> None:
    """Logged, a pause, and the next round fetches again: the events service keeps taking
    scores instead of a dead thread leaving them all with the broker."""
    writer = Writer()
    deliveries = [delivery(seq) for seq in range(3)]
    source = BrokenOnceSource(list(deliveries))
    consumer = ScoresConsumer(cast(Any, source), writer.on_scored, reorder_window_s=0.0)
    consumer.start()
    try:
        assert wait_for(lambda: writer.put == 3, 5)
        assert source.failed and all(d.acked for d in deliveries)
    finally:
        assert consumer.stop(5)


def test_a_frame_that_comes_too_late_for_the_window_counts_late_not_lost() -> None:
    """Issue 29.8: numbers 1, 2, 4, then 3 after 4 has left the window: 3 is dropped as
    late and counted once, as late; nothing is lost, and the handled count says 3."""
    writer = Writer()
    source = FakeSource([delivery(1, 1), delivery(2, 2), delivery(4, 4)])
    consumer = ScoresConsumer(cast(Any, source), writer.on_scored, reorder_window_s=0.0)
    consumer.start()
    try:
        assert wait_for(lambda: writer.put == 3, 5)
        source.pending.append(delivery(3, 3))
        assert wait_for(lambda: consumer.late == 1, 5)
    finally:
        assert consumer.stop(5)
    assert dict(consumer.late_by_camera) == {"gate": 1}
    assert consumer.lost == 0 and dict(consumer.frames_by_camera) == {"gate": 3}


def test_frames_that_follow_their_camera_s_last_one_skip_the_window() -> None:
    """A 5-s window: frame 1 waits it (nothing is known before it); 2 and 3, fetched once
    1 has left, follow it and are handed on at once; 5 (4 not come) waits its window."""
    writer = Writer()
    source = FakeSource([delivery(1, 1)])
    consumer = ScoresConsumer(cast(Any, source), writer.on_scored, reorder_window_s=5.0)
    consumer.start()
    try:
        assert not wait_for(lambda: writer.put == 1, 4)
        assert wait_for(lambda: writer.put == 1, 3)
        source.pending += [delivery(2, 2), delivery(3, 3), delivery(5, 5)]
        assert wait_for(lambda: writer.put == 3, 1)
        assert not wait_for(lambda: writer.put == 4, 3)
    finally:
        assert consumer.stop(5)
    assert writer.put == 4  # 5 handed on at the stop, 4 counted lost there
