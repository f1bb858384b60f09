"""A MySQL outage: the database is killed for 60 s while events keep coming, then restarted.

The service runs against a MariaDB server of the test's own; nothing may be lost or stored
twice, the spool must stay within its bound, and the service must say it is degraded.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hazardwatch.app import RunSummary, Service
from hazardwatch.records import EventUpdate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.conftest import free_port, service_settings, skip_or_fail
from tests.fakes import FakeEncoder
from tests.fault.mariadb import MariaDbInstance
from tests.helpers import scrape, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

OUTAGE_S = 60.0
SPOOL_MAX = 100
CAMERAS = 3


@pytest.fixture
def own_mariadb(tmp_path: Path) -> Iterator[MariaDbInstance]:
    missing = MariaDbInstance.available()
    if missing:
        skip_or_fail(missing)
    server = MariaDbInstance(tmp_path / "mariadb", free_port())
    server.install()
    server.start()
    server.create_database()
    try:
        yield server
    finally:
        server.stop()


class Produced:
    """Every event update the service made durable (stored or spooled), in order."""

    def __init__(self) -> None:
        self.updates: list[EventUpdate] = []
        self.lock = threading.Lock()

    def __call__(self, update: EventUpdate) -> None:
        with self.lock:
            self.updates.append(update)

    def started(self) -> int:
        with self.lock:
            return sum(u.kind == "started" for u in self.updates)

    def last_by_uuid(self) -> dict[str, EventUpdate]:
        with self.lock:
            return {u.record.uuid: u for u in self.updates}


def test_mysql_killed_for_60s_every_event_stored_exactly_once_and_spool_bounded(
    tmp_path: Path, red_clip: Path, own_mariadb: MariaDbInstance
) -> None:
    settings = service_settings(
        tmp_path, own_mariadb.url, [str(red_clip)] * CAMERAS, loop=True,
        storage={"spool_max_items": SPOOL_MAX, "score_interval_s": 0.25},
    )  # fmt: skip
    port = settings.api.port
    produced = Produced()
    service = Service(settings, lambda s: FakeEncoder(), event_listeners=[produced])
    summary: list[RunSummary] = []
    thread = threading.Thread(target=lambda: summary.append(service.run()), daemon=True)
    thread.start()
    repository = Repository(create_engine(own_mariadb.url))
    try:
        assert wait_for(lambda: _stored(repository) >= 1, 60, interval=0.5), "no event before"

        own_mariadb.kill()
        down_at = time.monotonic()
        started_before = produced.started()
        backlog, readyz_reasons = [], []
        while time.monotonic() - down_at < OUTAGE_S:
            assert thread.is_alive(), "the service died with the database"
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
            ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
            readyz_reasons.append((ready.status_code, ready.json()["reasons"]))
            metrics = scrape(port)
            backlog.append(metrics["hazardwatch_spool_backlog"])
            assert metrics["hazardwatch_spool_capacity"] == SPOOL_MAX
            time.sleep(2.0)
        started_during = produced.started() - started_before
        metrics_down = scrape(port)

        own_mariadb.start()
        restarted_at = time.monotonic()
        assert wait_for(lambda: scrape(port)["hazardwatch_spool_backlog"] == 0, 60, 0.5)
        drained_s = time.monotonic() - restarted_at
        assert wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 200,
            30,
            0.5,
        ), httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).text
        # Writes go straight to the database again: a new event is stored within a loop.
        stored_now = _stored(repository)
        assert wait_for(lambda: _stored(repository) > stored_now, 30, interval=0.5)
    finally:
        service.stop()
        thread.join(60)
    assert not thread.is_alive() and summary, "the service did not stop"

    last = produced.last_by_uuid()
    rows = repository.list_events(limit=1000)
    dropped = {k: v for k, v in metrics_down.items() if k.startswith("hazardwatch_spool_dropped")}
    print(
        f"\noutage {OUTAGE_S:.0f} s, {CAMERAS} cameras: {started_during} events started while "
        f"the database was down, {len(last)} in all; spool peak {max(backlog):.0f} of "
        f"{SPOOL_MAX} (dropped while down: {dropped}); replayed in {drained_s:.1f} s; "
        f"{len(rows)} rows stored"
    )
    assert started_during >= CAMERAS * 3, "events must keep coming while the database is down"
    # Degraded, with the reason, for the whole outage (after the first failed write).
    assert all(code == 503 for code, _ in readyz_reasons)
    assert any("database unreachable" in " ".join(r) for _, r in readyz_reasons)
    assert any("spooled, waiting for the database" in " ".join(r) for _, r in readyz_reasons)
    # Bounded: the spool filled to its limit and gave up score samples, never an event.
    assert 0 < max(backlog) <= SPOOL_MAX
    assert metrics_down['hazardwatch_spool_dropped_total{kind="scores"}'] > 0
    assert metrics_down['hazardwatch_spool_dropped_total{kind="event"}'] == 0
    assert metrics_down['hazardwatch_spool_dropped_total{kind="clip"}'] == 0
    # Exactly once: one row per event made, each in the state of its last update.
    assert sorted(r.uuid for r in rows) == sorted(last)
    media = tmp_path / "media"
    for row in rows:
        final = last[row.uuid].record
        assert (row.status, row.revision) == (final.status, final.revision), row.uuid
        assert row.ended_at is not None and row.peak_score == pytest.approx(final.peak_score)
        assert row.snapshot_path and (media / row.snapshot_path).is_file()
        # Clip links made during the outage went through the spool too.
        assert row.clip_path and (media / row.clip_path).is_file(), row.uuid


def _stored(repository: Repository) -> int:
    try:
        return len(repository.list_events(limit=1000))
    except Exception:  # not migrated yet, or the server is down
        return 0
