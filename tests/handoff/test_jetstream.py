"""The JetStream hand-off against a private nats-server: the local queue's protocol."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from hazardwatch.handoff.frames import (
    FramesLayout,
    JetStreamSink,
    JetStreamSource,
    ensure_frames_stream,
)
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.records import Frame, GatedFrame, MotionResult
from tests.conftest import NatsServer
from tests.helpers import wait_for

LAYOUT = FramesLayout(max_age_s=5.0, ack_wait_s=1.0, max_deliver=3)


def gated(camera: str, seq: int) -> GatedFrame:
    image = np.full((48, 64, 3), seq % 250, np.uint8)
    frame = Frame(camera, seq, time.time(), datetime.now(UTC), image)
    return GatedFrame(frame, MotionResult(True, 0.1, (1, 2, 30, 40)), "motion", 1)


@pytest.fixture
def link(nats_server: NatsServer) -> Iterator[BrokerLink]:
    link = BrokerLink(nats_server.url, "test")
    link.start()
    ensure_frames_stream(link, LAYOUT)
    yield link
    link.stop()


def fetch_all(source: JetStreamSource, want: int, timeout: float = 10.0) -> list:
    got: list = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got.extend(source.fetch(want - len(got), 0.5) or [])
    return got


def test_frames_put_on_one_side_are_fetched_and_acked_on_the_other(link: BrokerLink) -> None:
    sink = JetStreamSink(link, LAYOUT)
    source = JetStreamSource(link, LAYOUT)
    for seq in range(20):
        sink.put(gated("north" if seq % 2 else "south", seq))
    assert sink.flush(10) and sink.published == 20
    deliveries = fetch_all(source, 20)
    # Published many at a time, stored in the order put (one connection keeps it).
    assert [d.item.frame.seq for d in deliveries] == list(range(20))
    assert {d.attempt for d in deliveries} == {1}
    assert deliveries[3].item.motion.box == (1, 2, 30, 40)
    for d in deliveries:
        d.ack()
    assert source.fetch(5, 0.3) == []  # acked: gone from the work queue


def test_acks_made_just_before_a_stop_reach_the_broker(nats_server: NatsServer) -> None:
    """Acks are sent without waiting, many in one hop to the link's loop; a stop right
    after them still sends every one before the connection closes."""
    link = BrokerLink(nats_server.url, "acks")
    link.start()
    ensure_frames_stream(link, LAYOUT)
    sink = JetStreamSink(link, LAYOUT)
    source = JetStreamSource(link, LAYOUT)
    for seq in range(40):
        sink.put(gated("north", seq))
    assert sink.flush(10) and sink.published == 40
    deliveries = fetch_all(source, 40)
    assert len(deliveries) == 40
    hops = []
    original = link.loop.call_soon_threadsafe
    link.loop.call_soon_threadsafe = lambda *a, **k: hops.append(a) or original(*a, **k)  # type: ignore[method-assign]
    for d in deliveries:
        d.ack()
    link.loop.call_soon_threadsafe = original  # type: ignore[method-assign]
    # Not one per ack: acks that come while a hop is pending ride on it. How many hops
    # 40 acks take depends on when the loop's thread gets the CPU (10 once, in a CI run
    # on 2 loaded cores); one per ack would be 40.
    assert 1 <= len(hops) <= len(deliveries) // 2
    assert link.stop(10)

    check = BrokerLink(nats_server.url, "check")
    check.start()
    try:
        assert check.js is not None
        info = check.call(check.js.consumer_info(LAYOUT.stream, LAYOUT.consumer))
        stream = check.call(check.js.stream_info(LAYOUT.stream))
        assert (info.num_ack_pending, stream.state.messages) == (0, 0)
    finally:
        check.stop()


def test_nak_redelivers_and_term_never_does(link: BrokerLink) -> None:
    sink = JetStreamSink(link, LAYOUT)
    source = JetStreamSource(link, LAYOUT)
    sink.put(gated("north", 1))
    sink.put(gated("north", 2))
    assert sink.flush(10)
    first = fetch_all(source, 2)
    by_seq = {d.item.frame.seq: d for d in first}
    by_seq[1].nak()
    by_seq[2].term()
    again = fetch_all(source, 1)
    assert [(d.item.frame.seq, d.attempt) for d in again] == [(1, 2)]
    again[0].ack()
    assert source.fetch(5, 0.5) == []


def test_an_unacked_frame_comes_back_after_ack_wait(link: BrokerLink) -> None:
    """A worker that dies holding frames: they are redelivered to the next fetch."""
    sink = JetStreamSink(link, LAYOUT)
    source = JetStreamSource(link, LAYOUT)
    sink.put(gated("north", 1))
    assert sink.flush(10)
    assert len(fetch_all(source, 1)) == 1  # never settled
    time.sleep(LAYOUT.ack_wait_s + 0.3)
    (again,) = fetch_all(source, 1)
    assert again.attempt == 2
    again.ack()


def test_a_foreign_message_is_counted_terminated_and_never_blocks(link: BrokerLink) -> None:
    sink = JetStreamSink(link, LAYOUT)
    source = JetStreamSource(link, LAYOUT)
    assert link.js is not None
    link.call(link.js.publish(LAYOUT.subject_for("north"), b'{"hello": "world"}'))
    sink.put(gated("north", 5))
    assert sink.flush(10)
    deliveries = fetch_all(source, 1)
    assert [d.item.frame.seq for d in deliveries] == [5] and source.malformed == 1
    deliveries[0].ack()
    time.sleep(LAYOUT.ack_wait_s + 0.3)
    assert source.fetch(5, 0.3) == []  # terminated: not redelivered


def test_frames_nobody_scores_in_time_expire(nats_server: NatsServer) -> None:
    layout = FramesLayout(max_age_s=1.0, ack_wait_s=0.5)
    link = BrokerLink(nats_server.url, "expiry")
    link.start()
    try:
        ensure_frames_stream(link, layout)
        ensure_frames_stream(link, layout)  # idempotent
        sink = JetStreamSink(link, layout)
        for seq in range(5):
            sink.put(gated("north", seq))
        assert sink.flush(10)
        time.sleep(1.5)
        assert JetStreamSource(link, layout).fetch(5, 0.5) == []
    finally:
        link.stop()


def test_an_unreachable_broker_is_a_clear_error() -> None:
    link = BrokerLink("nats://user:s3cret@127.0.0.1:9", "nowhere", connect_timeout_s=1)
    with pytest.raises(ConnectionError, match=r"cannot reach NATS at nats://user:\*\*\*@127"):
        link.start()
    assert wait_for(lambda: True, 0.1)


def test_competing_workers_score_every_frame_exactly_once(link: BrokerLink) -> None:
    """Two scoring workers on one durable consumer: the same ScoringWorker as in one
    process, its source a broker. 40 frames of two cameras, each scored once."""
    from hazardwatch.records import ScoredFrame
    from hazardwatch.scoring.bank import load_bank
    from hazardwatch.scoring.worker import ScoringWorker
    from tests.fakes import FakeEncoder

    scored: list[ScoredFrame] = []
    workers = [
        ScoringWorker(
            FakeEncoder(),
            load_bank(None),
            JetStreamSource(link, LAYOUT),
            scored.extend,
            batch_size=4,
            max_frame_age_s=30,
        )
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    sink = JetStreamSink(link, LAYOUT)
    for seq in range(40):
        sink.put(gated("north" if seq % 2 else "south", seq))
    assert sink.flush(10)
    try:
        assert wait_for(lambda: len(scored) >= 40, 20)
    finally:
        for worker in workers:
            assert worker.stop(10)
    seqs = sorted(s.gated.frame.seq for s in scored)
    assert seqs == list(range(40))  # none lost, none twice
    assert all(w.stats.frames > 0 for w in workers)  # both took part
    # The sink numbers each camera's frames 1, 2, … as it hands them to the broker.
    for camera in ("north", "south"):
        numbers = sorted(s.gated.handoff_seq for s in scored if s.gated.frame.camera == camera)
        assert numbers == list(range(1, 21))


def test_scores_are_deduplicated_by_frame_and_come_back_in_capture_order(
    link: BrokerLink,
) -> None:
    """Two workers scored the same frame (a redelivery): one message. Workers finished
    out of order: the reorder window gives the detector capture order again."""
    from hazardwatch.handoff.reorder import ReorderBuffer
    from hazardwatch.handoff.scores import (
        ScoresLayout,
        ScoresPublisher,
        ScoresSource,
        ensure_scores_stream,
    )
    from hazardwatch.records import ScoredFrame
    from hazardwatch.scoring.bank import load_bank

    bank = load_bank(None)
    layout = ScoresLayout()
    ensure_scores_stream(link, layout)
    ensure_scores_stream(link, layout)  # idempotent
    frames = [gated("north", seq) for seq in range(6)]

    def scored(g: GatedFrame) -> ScoredFrame:
        probs = dict.fromkeys(bank.class_names, 1 / len(bank.class_names))
        return ScoredFrame(g, probs, np.zeros(len(bank.prompts), np.float32), bank)

    first, second = ScoresPublisher(link, layout), ScoresPublisher(link, layout)
    first.publish([scored(f) for f in (frames[3], frames[4], frames[5])])
    second.publish([scored(f) for f in (frames[0], frames[1], frames[2], frames[4])])
    assert second.duplicates == 1  # frame 4 again: dropped by its message id
    source = ScoresSource(link, layout, {bank.version: bank}.__getitem__)
    got: list = []
    deadline = time.monotonic() + 10
    while len(got) < 6 and time.monotonic() < deadline:
        got.extend(source.fetch(10, 0.5))
    assert len(got) == 6 and source.fetch(10, 0.3) == []
    arrival = [d.item.gated.frame.seq for d in got]
    assert arrival == [3, 4, 5, 0, 1, 2]  # as published: out of capture order
    window = ReorderBuffer(
        0.5, lambda s: s.gated.frame.camera, lambda s: (s.gated.frame.timestamp, s.gated.frame.seq)
    )
    for d in got:
        window.push(d.item, now=0.0)
        d.ack()
    assert [s.gated.frame.seq for s in window.due(1.0)] == [0, 1, 2, 3, 4, 5]


def test_a_worker_gives_frames_back_when_the_scores_cannot_be_published(
    link: BrokerLink,
) -> None:
    """No scores stream: publishing fails, the worker naks, the frames are redelivered."""
    from hazardwatch.handoff.scores import ScoresLayout, ScoresPublisher
    from hazardwatch.scoring.bank import load_bank
    from hazardwatch.scoring.worker import ScoringWorker
    from tests.fakes import FakeEncoder

    publisher = ScoresPublisher(link, ScoresLayout(subject="nowhere.scores"))
    source = JetStreamSource(link, LAYOUT)
    worker = ScoringWorker(FakeEncoder(), load_bank(None), source, publisher.publish,
                           max_frame_age_s=30)  # fmt: skip
    sink = JetStreamSink(link, LAYOUT)
    sink.put(gated("north", 1))
    assert sink.flush(10)
    worker.start()
    try:
        assert wait_for(lambda: worker.stats.frames >= 2, 10)  # scored, given back, again
    finally:
        assert worker.stop(10)
    assert publisher.published == 0
