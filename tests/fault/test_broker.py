"""Broker faults against a private nats-server: a worker killed mid-batch, the server
itself killed and restarted. Nothing acknowledged is lost, nothing is scored twice into
the scores the events service reads."""

from __future__ import annotations

import itertools
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from nats.js.errors import NotFoundError
from sqlalchemy.exc import SQLAlchemyError

from hazardwatch.handoff.frames import FramesLayout, JetStreamSink, ensure_frames_stream
from hazardwatch.handoff.intake import ScoresConsumer
from hazardwatch.handoff.link import BrokerLink, consumer_lag
from hazardwatch.handoff.scores import ScoresLayout, ScoresSource, ensure_scores_stream
from hazardwatch.metrics import Metrics
from hazardwatch.records import Frame, GatedFrame, MotionResult, ScoredFrame, ScoreSample
from hazardwatch.roles import EXIT_FENCED, CaptureNode, WorkerNode
from hazardwatch.scoring.bank import load_bank
from hazardwatch.settings import load_settings
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.conftest import REPO_ROOT, NatsServer, service_settings
from tests.fakes import FakeEncoder
from tests.helpers import wait_for

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

pytestmark = [pytest.mark.fault, pytest.mark.slow]
BANK = load_bank(None)


def gated(seq: int) -> GatedFrame:
    image = np.full((48, 64, 3), 100, np.uint8)
    frame = Frame("gate", seq, time.time(), datetime.now(UTC), image)
    return GatedFrame(frame, MotionResult(True, 0.1, None), "motion", 1)


def worker(
    url: str, seconds_per_image: float, batch: int, max_frame_age_s: float = 60
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fault.run_role", "worker", url,
         str(seconds_per_image), str(batch), str(max_frame_age_s)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def pulling(link: BrokerLink, frames: FramesLayout) -> bool:
    """A worker has a pull request waiting on the scoring consumer."""
    assert link.js is not None
    info = link.call(link.js.consumer_info(frames.stream, frames.consumer))
    return bool(info.num_waiting)


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


def stored_seqs(link: BrokerLink, frames: FramesLayout, want: int) -> list[int]:
    """The frames the stream holds, read and acked through the scoring consumer: until
    `want` came and a fetch found nothing more (a duplicate would show), or 20 s."""
    from hazardwatch.handoff.frames import JetStreamSource

    source = JetStreamSource(link, frames)
    got: list[int] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        batch = source.fetch(50, 0.5) or []
        for delivery in batch:
            got.append(delivery.item.frame.seq)
            delivery.ack()
        if not batch and len(got) >= want:
            break
    return got


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
        got = stored_seqs(link, frames, 30)
    finally:
        link.stop()
    assert sorted(got) == list(range(30)) and link.reconnects >= 1


def test_frames_put_while_the_broker_is_down_are_published_once_when_it_is_back(
    nats_server: NatsServer,
) -> None:
    """Issue 29.8: during an outage the capture node warned "N frame(s) not published" for
    frames the client had buffered and sent later. A frame whose ack did not come is
    published again under the same message id: the stream holds each once, and the sink
    counts each as published, none as failed."""
    link = BrokerLink(nats_server.url, "test")
    link.start()
    try:
        frames = FramesLayout(max_age_s=60, ack_wait_s=1.0)
        ensure_frames_stream(link, frames)
        sink = JetStreamSink(link, frames)
        for seq in range(10):
            sink.put(gated(seq))
        assert sink.flush(10) and sink.published == 10
        nats_server.stop(kill=True)
        for seq in range(10, 20):  # the broker is away: longer than a publish's 5 s timeout
            sink.put(gated(seq))
            time.sleep(0.1)
        time.sleep(6.0)
        nats_server.start()
        assert wait_for(lambda: link.connected, 20)
        assert sink.flush(30)
        assert (sink.published, sink.failed) == (20, 0)
        got = stored_seqs(link, frames, 20)
    finally:
        link.stop()
    assert sorted(got) == list(range(20)), "each frame stored once"


def test_with_no_worker_the_backlog_shows_and_frames_age_out(nats_server: NatsServer) -> None:
    """No worker at all: the scoring consumer's backlog is visible (the metric behind the
    HazardwatchWorkersBehind rule), frames older than max_age expire unscored, and once a
    worker is back the events side counts them per camera as lost."""
    link = BrokerLink(nats_server.url, "test")
    link.start()
    process = None
    frames = FramesLayout(max_age_s=2.0, ack_wait_s=1.0)
    ensure_frames_stream(link, frames)
    ensure_scores_stream(link, ScoresLayout())
    received: list[ScoredFrame] = []
    consumer = ScoresConsumer(
        ScoresSource(link, ScoresLayout(), {BANK.version: BANK}.__getitem__),
        received.extend,
        reorder_window_s=0.0,
    )
    try:
        consumer.start()
        sink = JetStreamSink(link, frames)
        process = worker(nats_server.url, 0.0, 8, frames.max_age_s)
        assert wait_for(lambda: pulling(link, frames), 60)  # a worker is asking for frames
        sink.put(gated(0))
        assert wait_for(lambda: len(received) == 1, 60)
        process.terminate()
        process.wait(30)
        for seq in range(1, 21):
            sink.put(gated(seq))
        assert sink.flush(10)
        watched = [(frames.stream, frames.consumer)]
        assert consumer_lag(link, watched) == [("scoring", 20, 0)]
        assert wait_for(lambda: consumer_lag(link, watched) == [("scoring", 0, 0)], 10)
        process = worker(nats_server.url, 0.0, 8, frames.max_age_s)
        assert wait_for(lambda: pulling(link, frames), 60)
        sink.put(gated(21))
        assert wait_for(lambda: len(received) == 2, 60)
    finally:
        consumer.stop(10)
        if process is not None and process.poll() is None:
            process.terminate()
            process.wait(30)
        link.stop()
    assert [s.gated.handoff_seq for s in received] == [1, 22]
    assert dict(consumer.lost_by_camera) == {"gate": 20}


def events_process(
    url: str, database_url: str, directory: Path, log: Path | None = None, partitions: int = 1
) -> subprocess.Popen[str]:
    """`hazardwatch events` as its own process; its log to `log` (else dropped)."""
    err = log.open("a") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fault.run_role", "events", url, database_url,
         str(directory), str(partitions)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
    )  # fmt: skip


def stop_all(
    nodes: list[CaptureNode | WorkerNode],
    threads: list[threading.Thread],
    processes: list[subprocess.Popen[str]],
) -> None:
    """A test's roles stopped whatever happened: the in-process nodes asked to stop and
    joined, the events processes still running killed."""
    for node in nodes:
        node.stop()
    for thread in threads:
        if thread.is_alive():
            thread.join(30)
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def scored_in_stream(link: BrokerLink) -> list[ScoredFrame]:
    """Every scored frame the workers published, read back through a consumer of its own."""
    source = ScoresSource(link, ScoresLayout(consumer="audit"), {BANK.version: BANK}.__getitem__)
    out: list[ScoredFrame] = []
    while batch := source.fetch(200, 1.0):
        for delivery in batch:
            out.append(delivery.item)
            delivery.ack()
    return out


def expected_rows(frames: list[ScoredFrame], interval: float) -> set[tuple[str, str, float]]:
    """The score rows an uninterrupted events service writes: per class, the first frame
    and then each frame at least an interval after the last sampled one (stored in ms)."""
    last: dict[str, float] = {}
    rows = set()
    for scored in sorted(frames, key=lambda s: (s.gated.frame.timestamp, s.gated.frame.seq)):
        frame = scored.gated.frame
        for name, value in scored.probabilities.items():
            if frame.timestamp - last.get(name, -1e18) >= interval - 0.001:
                last[name] = frame.timestamp
                at = frame.captured_at
                ts = at.replace(microsecond=at.microsecond // 1000 * 1000)
                rows.add((ts.isoformat(), name, round(float(value), 6)))
    return rows


def acked(link: BrokerLink, consumer: str = "events") -> int:
    """An events consumer's ack floor (one partition's): what the broker forgot."""
    assert link.js is not None
    try:
        info = link.call(link.js.consumer_info("HAZARDWATCH_SCORES", consumer))
    except NotFoundError:
        return 0
    return int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0


def consumer_created(link: BrokerLink) -> object:
    assert link.js is not None
    return link.call(link.js.consumer_info("HAZARDWATCH_SCORES", "events")).created


def start_standby(
    link: BrokerLink, start: Callable[[], subprocess.Popen[str]], log: Path
) -> subprocess.Popen[str]:
    """A second events instance beside a live owner: it stands by, and the owner's
    durable consumer is left as it was (not recreated under it)."""
    assert wait_for(lambda: acked(link) > 0, 60, interval=0.1)  # the first owns the scores
    before = consumer_created(link)
    second = start()
    assert wait_for(lambda: "stands by" in log.read_text(), 60, interval=0.1)
    time.sleep(2.0)
    assert consumer_created(link) == before
    return second


def fail_over(first: subprocess.Popen[str], fault: str, link: BrokerLink, log: Path) -> None:
    """The owner killed (SIGKILL) or paused (SIGSTOP) past its lease: the standby takes
    over within 10 s and acknowledges past what the owner had; a paused owner, resumed,
    exits with EXIT_FENCED without another write."""
    held = acked(link)
    first.send_signal(signal.SIGSTOP if fault == "paused" else signal.SIGKILL)
    failed_at = time.monotonic()
    assert wait_for(lambda: "took the scores over" in log.read_text(), 15, interval=0.05)
    takeover = time.monotonic() - failed_at
    print(f"{fault}: the standby took the scores over {takeover:.1f} s after the owner failed")
    assert takeover <= 10.0
    assert wait_for(lambda: acked(link) > held, 15, interval=0.1)
    if fault == "paused":
        first.send_signal(signal.SIGCONT)
    assert first.wait(10) == (EXIT_FENCED if fault == "paused" else -signal.SIGKILL)


@pytest.mark.parametrize("fault", ["restarted", "standby", "paused"])
def test_the_events_service_killed_and_restarted_resumes_without_duplicates(
    tmp_path: Path, red_clip: Path, nats_server: NatsServer, mysql_url: str, fault: str
) -> None:
    """A live camera (the clip looped at its frame rate) through a capture node and a worker;
    the events service (its own process, MariaDB) is killed with SIGKILL mid-run and started
    again while frames keep coming — or (`standby`) a second instance started beside it
    stands by (it never touches the durable consumer of the live one) and takes over
    within 10 s of the kill — or (`paused`) the owner is stopped with SIGSTOP past its
    lease, the standby takes over, and the owner, resumed, exits at once without another
    write (its lease is no longer current). It resumes from the durable consumer, and the
    score rows are exactly those of an uninterrupted run — none lost, none twice, the
    series' spacing unbroken — and no event stays open or is stored twice."""
    broker = {"url": nats_server.url, "image_format": "png"}
    settings = service_settings(tmp_path, mysql_url, [str(red_clip)], loop=True, broker=broker)
    capture = CaptureNode(settings, api_port=0)
    worker = WorkerNode(settings, encoder_factory=lambda s: FakeEncoder(), api_port=0)
    threads = [threading.Thread(target=node.run, daemon=True) for node in (worker, capture)]
    repo = Repository(create_engine(mysql_url))

    def rows() -> list[ScoreSample]:
        try:
            return repo.list_scores("crash", EPOCH, datetime.now(UTC) + timedelta(days=1))
        except SQLAlchemyError:  # not migrated yet
            return []

    link = BrokerLink(nats_server.url, "test")
    link.start()
    first = second = None
    try:
        first = events_process(nats_server.url, mysql_url, tmp_path / "events")
        for thread in threads:
            thread.start()
        classes = len(BANK.class_names)

        def mid_incident() -> bool:
            """4 s stored, an event open (the kill cuts it), and some of it acked: acks
            leave a moment after the rows commit, and a kill in that moment would leave
            the restart nothing to resume from but the beginning."""
            return (
                len(rows()) >= 4 * classes
                and bool(repo.list_events(status="open"))
                and acked(link) > 0
            )

        log = tmp_path / "second.log"
        if fault != "restarted":
            second = start_standby(link, lambda: events_process(
                nats_server.url, mysql_url, tmp_path / "standby", log), log)  # fmt: skip
        assert wait_for(mid_incident, 60, interval=0.1)
        if fault == "restarted":
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            time.sleep(2.0)  # frames keep coming and wait in the scores stream
            second = events_process(nats_server.url, mysql_url, tmp_path / "events")
        else:
            fail_over(first, fault, link, log)
        time.sleep(8.0)
        capture.stop()
        threads[1].join(30)
        watched = [("HAZARDWATCH_FRAMES", "scoring"), ("HAZARDWATCH_SCORES", "events")]
        # Well before the events consumer's ack_wait (30 s): what the killed service held
        # is delivered again at the restart, not after ack_wait behind newer frames.
        assert wait_for(
            lambda: consumer_lag(link, watched) == [("scoring", 0, 0), ("events", 0, 0)], 20
        ), consumer_lag(link, watched)
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 0
        published = scored_in_stream(link)
    finally:
        stop_all([capture, worker], threads, [p for p in (first, second) if p is not None])
        link.stop()
    # The second start took up where the first was killed, not from the beginning.
    resumed = int(re.search(r"frames_scored=(\d+)", out).group(1))  # type: ignore[union-attr]
    assert 0 < resumed < len(published)
    stored = [(r.ts.isoformat(), r.class_name, round(r.score, 6)) for r in rows()]
    assert len(stored) == len(set(stored))
    want = expected_rows(published, settings.storage.score_interval_s)
    assert set(stored) == want, (sorted(set(stored) - want)[:5], sorted(want - set(stored))[:5])
    events = repo.list_events(camera="crash")
    assert events and all(e.status != "open" for e in events)
    assert len({(e.class_name, e.started_at) for e in events}) == len(events)
    # An incident open at the kill goes on under its uuid after the restart (issue 29.8):
    # none is left "interrupted" beside a second row of the same incident.
    assert all(e.status == "closed" for e in events), [(e.uuid, e.status) for e in events]
    for cls in {e.class_name for e in events}:
        spans = sorted((e.started_at, e.ended_at) for e in events if e.class_name == cls)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert end is not None and end <= start, f"{cls}: overlapping events {spans}"


def test_malformed_and_foreign_messages_are_terminated_and_never_block(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Garbage and a foreign envelope on the frames and the scores subjects, among real
    frames: each is counted (hazardwatch_broker_malformed_total), logged once per
    consumer, terminated (never redelivered), and every real frame still gets through."""
    from hazardwatch.handoff.codec import pack

    settings = load_settings(
        None, broker={"url": nats_server.url, "ack_wait_s": 1.0}, scoring={"max_frame_age_s": 60}
    )
    node = WorkerNode(settings, encoder_factory=lambda s: FakeEncoder(), api_port=0)
    thread = threading.Thread(target=node.run, daemon=True)
    thread.start()
    link = BrokerLink(nats_server.url, "test")
    link.start()
    frames = FramesLayout(max_age_s=60, ack_wait_s=1.0)
    ensure_frames_stream(link, frames)
    ensure_scores_stream(link, ScoresLayout())
    received: list[ScoredFrame] = []
    metrics = Metrics()
    consumer = ScoresConsumer(
        ScoresSource(link, ScoresLayout(), {BANK.version: BANK}.__getitem__,
                     metrics.broker_malformed.labels("events").inc),
        received.extend,
        reorder_window_s=0.0,
    )  # fmt: skip
    consumer.start()
    bad = [b"not a frame", pack("scored", {"x": 1}, b""), b"HW\x09garbage"]
    try:
        assert wait_for(lambda: node.worker is not None, 30)
        sink = JetStreamSink(link, frames)
        assert link.js is not None
        js = link.js
        for seq in range(6):
            sink.put(gated(seq))
            assert sink.flush(10)
            data = bad[seq % len(bad)]
            link.call(js.publish(frames.subject_for("gate"), data))
            link.call(js.publish("hazardwatch.scores.gate", data))
        assert wait_for(lambda: len(received) == 6, 30)
        watched = [(frames.stream, frames.consumer), ("HAZARDWATCH_SCORES", "events")]
        assert wait_for(
            lambda: consumer_lag(link, watched) == [("scoring", 0, 0), ("events", 0, 0)], 10
        )
        time.sleep(2.0)  # past ack_wait: a terminated message never comes back
    finally:
        consumer.stop(10)
        node.stop()
        thread.join(30)
        link.stop()
    assert sorted(s.gated.frame.seq for s in received) == list(range(6))
    assert node.worker is not None and node.worker.queue.malformed == 6  # type: ignore[attr-defined]
    assert consumer.source.malformed == 6
    assert metrics.broker_malformed.labels("events")._value.get() == 6
    logged = [r for r in caplog.records if "terminated (logged once)" in r.getMessage()]
    assert len(logged) == 2  # once for the workers' consumer, once for the events'
