"""What the API's tests share: a database with five events (and media, some of it out of
reach) behind an `ApiState` with a scoring worker."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hazardwatch.api.app import ApiState
from hazardwatch.handoff.queue import LocalQueue
from hazardwatch.metrics import Metrics
from hazardwatch.records import EventRecord
from hazardwatch.scoring.bank import DEFAULT_BANK, load_bank
from hazardwatch.scoring.worker import ScoringWorker
from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.fakes import FakeEncoder

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
UUIDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(5)]


def event(i: int, **kw: object) -> EventRecord:
    start = T0 + timedelta(minutes=i)
    data: dict[str, object] = {
        "uuid": UUIDS[i], "camera": "north" if i % 2 else "south",
        "class_name": "traffic_accident" if i < 3 else "fire_smoke", "severity": "critical",
        "status": "closed", "started_at": start, "peak_at": start, "peak_score": 0.5 + i / 10,
        "mean_score": 0.5, "ended_at": start + timedelta(seconds=5),
    }  # fmt: skip
    data.update(kw)
    return EventRecord(**data)  # type: ignore[arg-type]


@pytest.fixture
def state(tmp_path: Path, database_url: str) -> Iterator[ApiState]:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    repo = Repository(engine)
    media = tmp_path / "media"
    (media / "south").mkdir(parents=True)
    (media / "south" / "a.jpg").write_bytes(b"\xff\xd8\xffjpeg")
    (media / "south" / "a.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42")
    (tmp_path / "secret.txt").write_text("outside the media dir")
    for i in range(5):
        repo.upsert_event(event(i))
    repo.upsert_event(event(0, snapshot_path="south/a.jpg", clip_path="south/a.mp4", revision=1))
    repo.upsert_event(event(2, snapshot_path="../secret.txt", revision=1))
    repo.upsert_event(event(4, snapshot_path="south/gone.jpg", revision=1))
    worker = ScoringWorker(FakeEncoder(), load_bank(DEFAULT_BANK), LocalQueue(4), lambda _: None)
    yield ApiState(repo, media, Metrics(), worker=worker)
    engine.dispose()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Marks a test whose call failed (`failed_call`), for fixtures that keep evidence of
    it (the browser tests' screenshot and console log)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call" and report.failed:
        item.failed_call = True  # type: ignore[attr-defined]
