"""Broker faults against a private nats-server: a worker killed mid-batch, the server
itself killed and restarted. Nothing acknowledged is lost, nothing is scored twice into
the scores the events service reads."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import numpy as np
import pytest
from nats.js.errors import NotFoundError

from hazardwatch.handoff.jetstream import (
    BrokerLink,
    FramesLayout,
    JetStreamSink,
    ScoresLayout,
    ScoresSource,
    ensure_frames_stream,
    ensure_scores_stream,
)
from hazardwatch.records import Frame, GatedFrame, MotionResult
from hazardwatch.scoring.bank import load_bank
from tests.conftest import REPO_ROOT, NatsServer
from tests.helpers import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]
BANK = load_bank(None)


def gated(seq: int) -> GatedFrame:
    image = np.full((48, 64, 3), 100, np.uint8)
    frame = Frame("gate", seq, time.time(), datetime.now(UTC), image)
    return GatedFrame(frame, MotionResult(True, 0.1, None), "motion", 1)


def worker(url: str, seconds_per_image: float, batch: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fault.run_role", "worker", url,
         str(seconds_per_image), str(batch)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def collect(source: ScoresSource, want: int, timeout: float) -> list[int]:
    """Sequence numbers of the scored frames the events side receives (acked)."""
    seqs: list[int] = []
    deadline = time.monotonic() + timeout
    while len(seqs) < want and time.monotonic() < deadline:
        for delivery in source.fetch(50, 0.5):
            seqs.append(delivery.item.gated.frame.seq)
            delivery.ack()
    return seqs


def test_a_worker_killed_mid_batch_loses_nothing_and_scores_nothing_twice(
    nats_server: NatsServer,
) -> None:
    """A slow worker takes a batch of 8 and is killed with SIGKILL before it acks; a second
    worker gets those frames after ack_wait. The events side sees each of 40 frames once."""
    link = BrokerLink(nats_server.url, "test")
    link.start()
    slow = fast = None
    try:
        frames = FramesLayout(max_age_s=60, ack_wait_s=1.0)
        ensure_frames_stream(link, frames)
        ensure_scores_stream(link, ScoresLayout())
        sink = JetStreamSink(link, frames)
        for seq in range(40):
            sink.put(gated(seq))
        assert sink.flush(10)
        slow = worker(nats_server.url, 2.0, 8)  # 16 s a batch: it never finishes one

        def held() -> int:
            assert link.js is not None
            try:
                info = link.call(link.js.consumer_info(frames.stream, frames.consumer))
            except NotFoundError:  # the worker has not subscribed yet
                return 0
            return int(info.num_ack_pending)

        assert wait_for(lambda: held() >= 8, 60, interval=0.2)  # its batch, unacked
        slow.send_signal(signal.SIGKILL)
        slow.wait(10)
        fast = worker(nats_server.url, 0.0, 8)
        source = ScoresSource(link, ScoresLayout(), {BANK.version: BANK}.__getitem__)
        seqs = collect(source, 40, 60)
        time.sleep(1.0)
        seqs += collect(source, 1, 1.0)  # anything more would be a duplicate
    finally:
        for process in (slow, fast):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(30)
        link.stop()
    assert sorted(seqs) == list(range(40))  # every frame, once


def test_the_broker_restarted_keeps_what_it_acknowledged(nats_server: NatsServer) -> None:
    """nats-server killed with SIGKILL and restarted on its file storage: the frames it
    had acknowledged are still there, and the clients reconnect by themselves."""
    link = BrokerLink(nats_server.url, "test")
    link.start()
    try:
        frames = FramesLayout(max_age_s=300, ack_wait_s=1.0)
        ensure_frames_stream(link, frames)
        sink = JetStreamSink(link, frames)
        for seq in range(20):
            sink.put(gated(seq))
        assert sink.flush(10) and sink.published == 20
        nats_server.stop(kill=True)
        time.sleep(1.0)
        nats_server.start()
        assert wait_for(lambda: link.connected, 20)
        for seq in range(20, 30):  # published after the restart, same link
            sink.put(gated(seq))
        assert sink.flush(20)
        from hazardwatch.handoff.jetstream import JetStreamSource

        source = JetStreamSource(link, frames)
        got: list[int] = []
        deadline = time.monotonic() + 20
        while len(got) < 30 and time.monotonic() < deadline:
            for delivery in source.fetch(30, 0.5) or []:
                got.append(delivery.item.frame.seq)
                delivery.ack()
    finally:
        link.stop()
    assert sorted(got) == list(range(30)) and link.reconnects >= 1


def test_with_no_worker_the_backlog_shows_and_frames_age_out(nats_server: NatsServer) -> None:
    """No worker at all: the scoring consumer's backlog is visible (the metric behind the
    HazardwatchWorkersBehind rule), and frames older than max_age expire unscored."""
    from hazardwatch.handoff.jetstream import consumer_lag

    link = BrokerLink(nats_server.url, "test")
    link.start()
    try:
        frames = FramesLayout(max_age_s=2.0, ack_wait_s=1.0)
        ensure_frames_stream(link, frames)
        sink = JetStreamSink(link, frames)
        for seq in range(20):
            sink.put(gated(seq))
        assert sink.flush(10)
        watched = [(frames.stream, frames.consumer)]
        assert consumer_lag(link, watched) == [("scoring", 20, 0)]
        assert wait_for(lambda: consumer_lag(link, watched) == [("scoring", 0, 0)], 10)
    finally:
        link.stop()
