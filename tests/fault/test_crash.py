"""Crash safety: `kill -9` in the middle of an event, then a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository
from tests.conftest import free_port
from tests.helpers import wait_for

pytestmark = pytest.mark.fault


ROOT = Path(__file__).resolve().parents[2]


def _run(data_dir: Path, args: list[str]) -> subprocess.Popen[str]:
    """The real service in its own process, with the fake encoder (events on red frames)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAZARDWATCH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.fault.run_fake", str(data_dir), str(free_port()), *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_kill_9_leaves_no_duplicate_or_half_written_event_and_restart_settles_it(
    tmp_path: Path,
    red_clip: Path,
) -> None:
    data = tmp_path / "data"
    db = data / "hazardwatch.db"
    url = f"sqlite:///{db}"
    process = _run(data, ["--loop", str(red_clip)])
    try:

        def open_event() -> bool:
            if not db.exists():
                return False
            try:
                with create_engine(url).connect() as conn:
                    n = conn.execute(sa.text("SELECT COUNT(*) FROM events WHERE status='open'"))
                    return bool(n.scalar_one())
            except sa.exc.OperationalError:
                return False  # not migrated yet

        assert wait_for(open_event, 90, interval=0.1), process.stderr.read()  # type: ignore[union-attr]
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    repo = Repository(create_engine(url))
    before = repo.list_events(limit=1000)
    assert any(e.status == "open" for e in before)
    # Every stored row is whole: times, scores and media that exist.
    for e in before:
        assert e.started_at <= e.peak_at and 0 <= e.peak_score <= 1
        if e.snapshot_path:
            assert (tmp_path / "data" / "media" / e.snapshot_path).read_bytes()[:2] == b"\xff\xd8"

    restart = _run(data, [str(red_clip)])
    _, err = restart.communicate(timeout=120)
    assert restart.returncode == 0, err
    assert "left open by an earlier run" in err
    after = {e.uuid: e for e in repo.list_events(limit=1000)}
    assert len(after) == len(repo.list_events(limit=1000))  # uuids unique
    for e in before:
        if e.status == "open":
            # The same hazard in view again at once: the event goes on under its uuid (one
            # row, its end stored); else it is closed as interrupted.
            again = after[e.uuid]
            assert again.status in ("closed", "interrupted") and again.ended_at is not None
            assert again.revision > e.revision and again.started_at == e.started_at
            if again.status == "closed":
                assert "goes on" in err
            twins = [x for x in after.values() if x.uuid != e.uuid
                     and x.class_name == e.class_name and x.started_at >= e.started_at
                     and x.started_at <= again.ended_at]  # fmt: skip
            assert not twins, "the incident was stored twice"
    assert not [e for e in after.values() if e.status == "open"]
    assert not list((tmp_path / "data" / "media").rglob(".*.tmp"))
