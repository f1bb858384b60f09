"""The score series written the way a thousand cameras need: few statements a batch,
each compiled once, the rows and last-seen times exactly as before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from hazardwatch.records import ScoreSample
from hazardwatch.storage.repository import Repository
from hazardwatch.storage.scores import SEEN_A_STATEMENT

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_a_batch_of_a_hundred_cameras_takes_three_statements(repo: Repository) -> None:
    """Two frames of nine classes from each of 100 cameras: one INSERT of the 1,800 rows and
    one UPDATE of last-seen times per 64 cameras (before: an UPDATE a camera)."""
    frames = [
        ScoreSample(f"cam{c}", T0 + timedelta(seconds=s), f"class{k}", 0.1 * k, None)
        for c in range(100)
        for s in (0, 2)
        for k in range(9)
    ]
    repo.ensure_cameras((f"cam{c}", "rtsp") for c in range(100))
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    updates_before = server_updates(repo)
    sa.event.listen(repo.engine, "before_cursor_execute", count)
    try:
        repo.add_scores(frames)
    finally:
        sa.event.remove(repo.engine, "before_cursor_execute", count)
    updates = -(-100 // SEEN_A_STATEMENT)
    assert statements == ["INSERT"] + ["UPDATE"] * updates
    if updates_before is not None:  # what the server ran (an executemany is one call above)
        assert server_updates(repo) - updates_before == updates
    newest = T0 + timedelta(seconds=2)
    stored = repo.list_scores("cam42", T0, T0 + timedelta(minutes=1), "class3")
    assert [(r.ts, round(r.score, 6)) for r in stored] == [
        (T0.replace(microsecond=123000), 0.3), (newest.replace(microsecond=123000), 0.3)
    ]  # fmt: skip
    seen = {row["name"]: row["last_seen_at"] for row in repo.list_cameras()}
    assert all(seen[f"cam{c}"] == newest.replace(microsecond=123000) for c in range(100))
    repo.add_scores(frames)  # delivered again: stored once
    assert len(repo.list_scores("cam42", T0, T0 + timedelta(minutes=1))) == 18


def server_updates(repo: Repository) -> int | None:
    """UPDATE statements the MySQL server has run so far (None on SQLite)."""
    if repo.engine.dialect.name not in ("mysql", "mariadb"):
        return None
    with repo.engine.connect() as conn:
        row = conn.exec_driver_sql("SHOW GLOBAL STATUS LIKE 'Com_update'").one()
    return int(row[1])
