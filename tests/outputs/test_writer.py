"""The writer against a database that goes away: spooled in order, replayed exactly once."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from hazardwatch.metrics import Metrics, PipelineCollector, PipelineView
from hazardwatch.outputs.writer import EventWriter
from hazardwatch.records import EventRecord, EventUpdate, ScoreSample
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.fences import Fence
from hazardwatch.storage.repository import Repository
from hazardwatch.storage.spool import Spool
from tests.helpers import wait_for

T = datetime(2026, 1, 1, tzinfo=UTC)


class Outage(Repository):
    """The real repository, with a switch that makes every write fail like a lost server."""

    down = False

    def upsert_event(self, event: EventRecord, fence: Fence | None = None) -> None:
        if self.down:
            raise sa.exc.OperationalError("INSERT", {}, ConnectionRefusedError("down"))
        super().upsert_event(event, fence)


def update(uuid: str, kind: str, revision: int) -> EventUpdate:
    record = EventRecord(uuid, "cam", "fire_smoke", "critical",
                         "closed" if kind == "ended" else "open", T, T, 0.5 + revision / 10, 0.5,
                         ended_at=T if kind == "ended" else None, revision=revision)  # fmt: skip
    return EventUpdate(kind, record, np.zeros((8, 8, 3), np.uint8), None)


def test_outage_spools_then_replays_every_event_exactly_once(
    tmp_path: Path, database_url: str
) -> None:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    repo = Outage(engine)
    metrics = Metrics()
    heard: list[str] = []
    writer = EventWriter(repo, tmp_path / "media", spool=Spool(tmp_path / "spool.db"),
                         metrics=metrics, retry_interval_s=0.1)  # fmt: skip
    writer.listeners.append(lambda u: heard.append(f"{u.record.uuid}:{u.kind}"))
    writer.start()
    writer.put_event(update("a", "started", 0))
    assert wait_for(lambda: writer.events_written == 1, 5)
    repo.down = True
    for rev, kind in enumerate(["updated", "updated", "ended"], start=1):
        writer.put_event(update("a", kind, rev))
    writer.put_event(update("b", "started", 0))
    # Alerts are not held back by the outage: listeners hear of every spooled event.
    assert wait_for(lambda: len(heard) == 5, 5)
    # a's three later states collapse into its last one: the spool holds a@3 and b@0.
    assert wait_for(lambda: writer.spooled == 2, 5) and not writer.database_up
    assert Repository(engine).get_event("a").revision == 0  # type: ignore[union-attr]
    assert "hazardwatch_db_write_failures_total" in metrics.render().decode()
    repo.down = False
    assert wait_for(lambda: writer.spooled == 0, 10)
    assert writer.stop(10)
    stored = {e.uuid: e for e in Repository(engine).list_events()}
    assert set(stored) == {"a", "b"}
    assert stored["a"].status == "closed" and stored["a"].revision == 3
    assert stored["a"].snapshot_path == "cam/a.jpg"
    assert (tmp_path / "media" / "cam" / "a.jpg").read_bytes()[:2] == b"\xff\xd8"
    engine.dispose()


@pytest.mark.mysql
def test_a_slow_database_bounds_the_queue_drops_scores_and_holds_events_back(
    tmp_path: Path, mysql_url: str
) -> None:
    """A database that is up but does not finish writes (tables locked by another
    session): at most `max_backlog` writes queue; further score samples are dropped and
    counted, an event waits for room instead of growing memory, and once the database
    answers everything accepted is stored (before: the queue grew without limit)."""
    engine = create_engine(mysql_url)
    migrate.upgrade(engine)
    metrics = Metrics()
    writer = EventWriter(Repository(engine), tmp_path / "media", metrics=metrics, max_backlog=50)
    metrics.registry.register(PipelineCollector(PipelineView(writer=writer)))
    writer.start()
    locker = engine.connect()
    locker.exec_driver_sql("FLUSH TABLES WITH READ LOCK")  # every write waits
    try:
        sample = ScoreSample("cam", T, "fire_smoke", 0.1)
        for i in range(200):
            writer.put_scores([dataclasses.replace(sample, ts=T + timedelta(seconds=i))])
        # The writer takes what was queued when it woke into the database's hands (one
        # write, at least the first put), where it waits; the rest queued to the bound
        # was dropped.
        assert wait_for(lambda: 200 - writer.dropped_scores - writer.backlog >= 1, 5)
        time.sleep(0.3)  # its write is in the database's hands: what it holds is settled
        held = 200 - writer.dropped_scores - writer.backlog
        assert 1 <= held < 150 and writer.dropped_scores >= 50
        puts = 200
        while writer.backlog < 50:  # full again
            writer.put_scores([dataclasses.replace(sample, ts=T + timedelta(seconds=puts))])
            puts += 1
        assert writer.backlog == 50
        waiting = threading.Thread(target=writer.put_event, args=(update("e", "started", 0),))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive()  # the event waits for room; it is not dropped
        text = metrics.render().decode()
    finally:
        locker.exec_driver_sql("UNLOCK TABLES")
        locker.close()
    waiting.join(10)
    assert not waiting.is_alive()
    assert writer.stop(30)
    assert Repository(engine).get_event("e") is not None
    assert writer.scores_written == puts - writer.dropped_scores == 50 + held
    assert 'hazardwatch_writer_dropped_total{kind="scores"}' in text
    assert "hazardwatch_writer_capacity 50.0" in text
    engine.dispose()


class Recorded(Repository):
    """The real repository, recording each write it is asked for, in order."""

    calls: list[str]

    def add_scores(self, samples: list[ScoreSample]) -> None:  # type: ignore[override]
        self.calls.append(f"scores:{len(samples)}")
        super().add_scores(samples)

    def upsert_event(self, event: EventRecord, fence: Fence | None = None) -> None:
        self.calls.append(f"event:{event.uuid}")
        super().upsert_event(event, fence)


def test_score_samples_queued_back_to_back_are_written_together_in_order(
    tmp_path: Path, database_url: str
) -> None:
    """Forty puts of a frame's samples with an event among them: two writes of samples
    around the event, every row stored, and the marks of all of them durable."""
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    repo = Recorded(engine)
    repo.calls = []
    writer = EventWriter(repo, tmp_path / "media")
    sample = ScoreSample("cam", T, "fire_smoke", 0.1)
    for i in range(40):
        if i == 25:
            writer.put_event(update("a", "started", 0))
        frame = T + timedelta(seconds=i)
        writer.put_scores([dataclasses.replace(sample, ts=frame, class_name=c) for c in "xyz"])
    mark = writer.mark()
    writer.start()
    assert wait_for(lambda: writer.durable(mark), 10)
    assert repo.calls == ["scores:75", "event:a", "scores:45"]
    assert writer.scores_written == 120
    assert writer.stop(10)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM scores").scalar() == 120
    engine.dispose()


def test_what_the_database_never_took_waits_in_the_spool_for_the_next_run(
    tmp_path: Path, database_url: str
) -> None:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    repo = Outage(engine)
    repo.down = True
    writer = EventWriter(repo, tmp_path / "media", spool=Spool(tmp_path / "spool.db"),
                         retry_interval_s=0.1)  # fmt: skip
    writer.start()
    writer.put_event(update("c", "started", 0))
    writer.put_event(update("c", "ended", 1))
    assert writer.stop(10)
    assert writer.spooled == 1  # the ended state replaced the started one
    writer.spool.close()  # type: ignore[union-attr]
    # Next run: a fresh writer over the same spool file stores it.
    fresh = EventWriter(Repository(engine), tmp_path / "media", spool=Spool(tmp_path / "spool.db"))
    assert fresh.replay() == 1 and fresh.spooled == 0
    assert Repository(engine).get_event("c").status == "closed"  # type: ignore[union-attr]
    engine.dispose()


def test_media_bytes_grow_as_snapshots_are_written(tmp_path: Path, sqlite_url: str) -> None:
    """Between retention sweeps, hazardwatch_media_bytes follows what is written."""
    import numpy as np

    from hazardwatch.metrics import Metrics
    from hazardwatch.records import EventRecord, EventUpdate
    from hazardwatch.storage import migrate
    from hazardwatch.storage.engine import create_engine
    from hazardwatch.storage.repository import Repository

    engine = create_engine(sqlite_url)
    migrate.upgrade(engine)
    metrics = Metrics()
    writer = EventWriter(Repository(engine), tmp_path / "media", metrics=metrics)
    writer.start()
    now = datetime.now(UTC)
    record = EventRecord("m1", "cam", "fire_smoke", "critical", "open", now, now, 0.9, 0.8)
    image = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    writer.put_event(EventUpdate("started", record, image, None))
    assert writer.stop(10)
    engine.dispose()
    written = sum(p.stat().st_size for p in (tmp_path / "media").rglob("*.jpg"))
    assert written > 0
    assert f"hazardwatch_media_bytes {float(written)}" in metrics.render().decode()


def test_an_event_start_and_end_each_log_one_line(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    engine = create_engine(sqlite_url)
    migrate.upgrade(engine)
    writer = EventWriter(Repository(engine), tmp_path / "media")
    writer.start()
    now = datetime.now(UTC)
    opened = EventRecord("l1", "gate", "fire_smoke", "critical", "open", now, now, 0.9, 0.8)
    with caplog.at_level(logging.INFO, logger="hazardwatch.outputs.writer"):
        writer.put_event(EventUpdate("started", opened, None, None))
        writer.put_event(EventUpdate("updated", opened, None, None))
        ended = dataclasses.replace(
            opened, status="closed", ended_at=now + timedelta(seconds=4), revision=2
        )
        writer.put_event(EventUpdate("ended", ended, None, None))
        assert writer.stop(10)
    engine.dispose()
    lines = [r.getMessage() for r in caplog.records if r.name == "hazardwatch.outputs.writer"]
    assert lines == [
        "event l1 started: camera gate, fire_smoke (critical), score 0.90",
        "event l1 ended: camera gate, fire_smoke, 4.0 s, peak 0.90",
    ]


def test_once_its_leases_are_not_current_nothing_more_is_written_or_marked_stored(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An events instance paused past its leases runs again with writes queued from
    before: from the first one found not current, none is stored, no listener hears of
    it and no mark becomes durable (so none of its frames is acked: the next owner gets
    them)."""
    engine = create_engine(sqlite_url)
    migrate.upgrade(engine)
    current = True
    heard: list[str] = []
    writer = EventWriter(Repository(engine), tmp_path / "media")
    writer.may_write = lambda: current
    writer.listeners.append(lambda u: heard.append(u.record.uuid))
    writer.start()
    writer.put_event(update("a", "started", 0))
    first = writer.mark()
    assert wait_for(lambda: writer.durable(first), 5) and heard == ["a"]
    current = False
    writer.put_event(update("b", "started", 0))
    writer.put_scores([ScoreSample("cam", T, "fire_smoke", 0.1)])
    second = writer.mark()
    time.sleep(0.3)
    assert writer.stop(5)
    assert writer.fenced and not writer.durable(second) and heard == ["a"]
    assert [e.uuid for e in Repository(engine).list_events()] == ["a"]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM scores").scalar() == 0
    assert "lease on the scores is no longer current" in caplog.text
    engine.dispose()


def test_a_write_the_database_fences_off_stops_the_writer_only_once_a_lease_is_lost(
    tmp_path: Path, sqlite_url: str
) -> None:
    """The database refuses a write by its partition's token. With every lease current,
    the write was one left over for a partition given back: dropped, marked done, and
    the writer goes on. When the pause fell between the writer's question and the commit
    (the lease current when asked, not after): nothing more is written or marked stored."""
    engine = create_engine(sqlite_url)
    migrate.upgrade(engine)
    repo = Repository(engine)
    old = repo.fences.take(0, "a")
    repo.fences.take(0, "b")  # partition 0 taken over since
    writer = EventWriter(repo, tmp_path / "media")
    writer.may_write = lambda: True
    writer.fence_of = lambda camera: old if camera == "cam" else None
    writer.start()
    yard = update("yard-event", "started", 0)
    writer.put_event(update("left-over", "started", 0))
    writer.put_event(
        dataclasses.replace(yard, record=dataclasses.replace(yard.record, camera="yard"))
    )
    mark = writer.mark()
    assert wait_for(lambda: writer.durable(mark), 5) and not writer.fenced
    assert [e.uuid for e in repo.list_events()] == ["yard-event"]
    answers = iter([True])  # current when the writer asks; lost by the time it is refused
    writer.may_write = lambda: next(answers, False)
    writer.put_event(update("late", "started", 0))
    late = writer.mark()
    assert wait_for(lambda: writer.fenced, 5)
    time.sleep(0.2)
    assert not writer.durable(late) and repo.get_event("late") is None
    assert writer.stop(5)
    engine.dispose()
