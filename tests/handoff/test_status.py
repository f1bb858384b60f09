"""The roles' status bucket: what a role puts, the events service reads; a role stopped
cleanly is gone at once, a silent one counts as gone after the TTL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import pytest

from hazardwatch.handoff.latest import LatestBoard, LatestPublisher
from hazardwatch.handoff.link import BrokerLink
from hazardwatch.handoff.status import (
    STATUS_BUCKET,
    STATUS_TTL_S,
    KvBucket,
    StatusBoard,
    StatusPublisher,
)
from hazardwatch.records import CameraState, CameraStatus, NodeStatus
from tests.conftest import NatsServer
from tests.helpers import wait_for


@pytest.fixture
def link(nats_server: NatsServer) -> Iterator[BrokerLink]:
    link = BrokerLink(nats_server.url, "test")
    link.start()
    yield link
    link.stop()
    # Stopped, even with its server gone, the link leaves no task pending (one destroyed
    # at a later garbage collection once broke an unrelated test's parser).
    assert [t for t in asyncio.all_tasks(link.loop) if not t.done()] == []


def test_roles_status_is_read_back_and_removed_on_a_clean_stop(link: BrokerLink) -> None:
    cameras = {"camera.gate": {"name": "gate", "state": "streaming", "node": "a-1"}}
    capture = StatusPublisher(
        link, lambda: {**cameras, "node.capture.a-1": {"role": "capture"}}, interval_s=0.1
    )
    worker = StatusPublisher(link, lambda: {"node.worker.b-2": {"role": "worker"}}, 0.1)
    board = StatusBoard(link, interval_s=0.1)
    for component in (capture, worker, board):
        component.start()
    try:
        assert wait_for(lambda: len(board.workers()) == 1 and len(board.cameras()) == 1, 10)
        (camera,) = board.cameras()
        assert camera.name == "gate" and camera.node == "a-1"
        assert camera.state is CameraState.STREAMING
        assert camera.status_age_s is not None and camera.status_age_s < 5
        assert [n.role for n in board.capture_nodes()] == ["capture"]
        # A camera the node no longer runs (a reload removed it) goes with the next round.
        cameras.clear()
        assert wait_for(lambda: board.cameras() == [], 10)
        assert worker.stop(5)
        assert wait_for(lambda: board.workers() == [], 10)  # deleted, not left to age out
        assert board.read_ok
    finally:
        for component in (capture, worker, board):
            component.stop(5)


def test_a_role_that_fell_silent_counts_as_gone_after_the_ttl(link: BrokerLink) -> None:
    """A value older than the TTL (a node that died, its key not expired yet) is ignored."""

    async def put_old() -> None:
        kv = await KvBucket(link).get()
        old = time.time() - STATUS_TTL_S - 1
        await kv.put(
            "node.worker.dead-9", json.dumps({"role": "worker", "updated_at": old}).encode()
        )
        await kv.put(
            "node.worker.live-1", json.dumps({"role": "worker", "updated_at": time.time()}).encode()
        )

    link.call(put_old(), timeout=10)
    board = StatusBoard(link)
    board.refresh()
    assert board.read_ok and [w.role for w in board.workers()] == ["worker"]
    assert list(board._entries) == ["node.worker.live-1"]  # the silent one is dropped


def test_a_lost_bucket_is_made_again(link: BrokerLink) -> None:
    """The bucket's handle is kept between rounds; when the bucket is gone (a restarted
    nats-server loses memory storage) a round fails, and the next one makes it again."""
    publisher = StatusPublisher(link, lambda: {"node.worker.b-2": {"role": "worker"}}, 0.1)
    board = StatusBoard(link, interval_s=0.1)
    publisher.start()
    board.start()
    try:
        assert wait_for(lambda: len(board.workers()) == 1, 10)

        async def lose() -> None:
            assert link.js is not None
            await link.js.delete_key_value(STATUS_BUCKET)

        link.call(lose(), timeout=10)
        assert wait_for(lambda: not board.read_ok or board.workers() == [], 10)
        assert wait_for(lambda: board.read_ok and len(board.workers()) == 1, 10)
    finally:
        publisher.stop(5)
        board.stop(5)


def test_while_the_broker_is_away_cameras_read_unknown_and_their_frame_age_grows(
    nats_server: NatsServer, link: BrokerLink
) -> None:
    """Issue 29.8: during a broker outage the events service showed cameras as streaming
    with a frozen frame age for about 10 s, while the other roles said "not connected"."""
    camera = {"name": "gate", "state": "streaming", "last_frame_age_s": 0.1}
    silent = []

    def entries() -> dict[str, dict[str, object]]:
        if silent:
            raise RuntimeError("the capture node hangs")
        return {"camera.gate": camera}

    capture = StatusPublisher(link, entries, interval_s=0.1)
    board = StatusBoard(link, interval_s=0.1)
    capture.start()
    board.start()
    try:
        assert wait_for(lambda: [c.state for c in board.cameras()] == ["streaming"], 10)
        silent.append(True)  # no more reports: the one held ages
        time.sleep(1.0)
        (held,) = board.cameras()
        assert (held.last_frame_age_s or 0) >= 1.0 and (held.status_age_s or 0) >= 0.9
        nats_server.stop()
        assert wait_for(lambda: [c.state for c in board.cameras()] in ([], ["unknown"]), 3)
    finally:
        capture.stop(1)
        board.stop(5)


def test_reading_the_board_leaves_no_consumers_behind(link: BrokerLink) -> None:
    """Issue 27: every listing of the bucket's keys left an ephemeral consumer for its
    5-minute inactivity threshold (124 after four minutes of one events service)."""
    publisher = StatusPublisher(link, lambda: {"node.worker.b-2": {"role": "worker"}}, 0.1)
    publisher.start()
    board = StatusBoard(link)
    try:
        assert wait_for(lambda: (board.refresh(), board.workers())[1] != [], 10)
        for _ in range(10):
            board.refresh()
        assert board.read_ok and len(board.workers()) == 1

        async def consumers() -> int:
            assert link.js is not None
            info = await link.js.stream_info(f"KV_{STATUS_BUCKET}")
            return int(info.state.consumer_count)

        assert wait_for(lambda: link.call(consumers(), timeout=5) <= 1, 15, interval=0.5), (
            link.call(consumers(), timeout=5)
        )
    finally:
        publisher.stop(5)


def test_a_report_of_another_version_reads_as_far_as_it_goes() -> None:
    """A capture node of another version must not take the status page down: fields it
    lacks or sends with the wrong type read as absent, a state this version does not know
    as unknown."""
    status = CameraStatus.from_json(
        {"name": "gate", "state": "dreaming", "fps": "fast", "frames_read": 7,
         "recording": {"state": "recording", "restarts": None}, "extra": 1}
    )  # fmt: skip
    assert status == CameraStatus(
        "gate", None, CameraState.UNKNOWN, fps=0.0, frames_read=7,
        recording=status.recording,
    )  # fmt: skip
    assert status.recording is not None and status.recording.restarts == 0
    assert status.problem() is None  # unknown is not a reason to be unready
    node = NodeStatus.from_json({"role": "worker", "node": "b-2", "frames_scored": 3.0})
    assert (node.role, node.frames_scored, node.running) == ("worker", 3, True)
    assert NodeStatus.from_json(node.to_json()) == node
    stalled = CameraStatus("gate", "rtsp", CameraState.STALLED, node="a-1")
    assert CameraStatus.from_json(stalled.to_json()) == stalled
    assert stalled.problem() == "camera gate: stalled (capture node a-1)"


def test_a_capture_nodes_latest_frames_reach_the_events_service(link: BrokerLink) -> None:
    class Frames:
        def __init__(self) -> None:
            self.frames = {"gate": b"\xff\xd8\xff gate"}

        def cameras(self) -> list[str]:
            return list(self.frames)

        def jpeg(self, camera: str) -> bytes | None:
            return self.frames.get(camera)

    frames = Frames()
    publisher = LatestPublisher(link, frames, interval_s=0.5)
    board = LatestBoard(link, cache_s=0.0)
    assert board.jpeg("gate") is None  # nothing put yet
    publisher.start()
    try:
        assert wait_for(lambda: board.jpeg("gate") == b"\xff\xd8\xff gate", 10)
        frames.frames["gate"] = b"\xff\xd8\xff newer"
        assert wait_for(lambda: board.jpeg("gate") == b"\xff\xd8\xff newer", 10)
        assert board.jpeg("yard") is None
        frames.frames["yard"] = b"\xff\xd8\xff yard"  # a new camera: put at the next tick
        assert wait_for(lambda: board.jpeg("yard") == b"\xff\xd8\xff yard", 3)
        cached = LatestBoard(link, cache_s=60.0)
        assert cached.jpeg("gate") == b"\xff\xd8\xff newer"
        frames.frames["gate"] = b"\xff\xd8\xff newest"
        time.sleep(1.2)
        assert cached.jpeg("gate") == b"\xff\xd8\xff newer"  # a page's refreshes: no broker read
    finally:
        assert publisher.stop(5)
