from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.models import Base

TABLES = {
    "cameras",
    "events",
    "scores",
    "camera_states",
    "partition_fences",
    "event_reviews",
    "keyframes",
    "prompt_banks",
}


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}


def test_upgrade_downgrade_upgrade(database_url: str) -> None:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    assert _tables(engine) == TABLES
    assert migrate.current_revision(engine) == migrate.head_revision(engine)

    migrate.downgrade(engine, "base")
    assert _tables(engine) == set()
    assert migrate.current_revision(engine) is None

    migrate.upgrade(engine)
    assert _tables(engine) == TABLES
    engine.dispose()


def test_models_match_migrations(database_url: str) -> None:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    engine.dispose()
    assert diff == []


def test_dashboard_indexes_exist(database_url: str) -> None:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    inspector = sa.inspect(engine)
    events = {tuple(ix["column_names"]) for ix in inspector.get_indexes("events")}
    scores = {tuple(ix["column_names"]) for ix in inspector.get_indexes("scores")}
    engine.dispose()
    assert {("started_at",), ("camera", "started_at"), ("class_name", "started_at")} <= events
    assert {("ts",), ("camera", "ts", "class_name"), ("class_name", "ts")} <= scores


def test_duplicate_score_rows_of_an_earlier_version_are_removed(database_url: str) -> None:
    """0005 makes (camera, ts, class_name) unique; rows an earlier version wrote twice are
    kept once (the oldest), the others untouched."""
    engine = create_engine(database_url)
    migrate.upgrade(engine, "0004")
    ts = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO cameras (name, source_kind, created_at) "
                             "VALUES ('gate', 'file', :ts)"), {"ts": ts})  # fmt: skip
        for class_name, score in [("crash", 0.5), ("crash", 0.7), ("fire", 0.1)]:
            conn.execute(
                sa.text("INSERT INTO scores (camera, ts, class_name, score) "
                        "VALUES ('gate', :ts, :c, :s)"),
                {"ts": ts, "c": class_name, "s": score},
            )  # fmt: skip
    migrate.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT class_name, score FROM scores ORDER BY class_name"))
        assert [tuple(r) for r in rows] == [("crash", 0.5), ("fire", 0.1)]
    migrate.downgrade(engine, "0004")  # and back
    engine.dispose()


def test_mysql_timestamps_keep_milliseconds(mysql_url: str) -> None:
    engine = create_engine(mysql_url)
    migrate.upgrade(engine)
    columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("events")}
    engine.dispose()
    assert getattr(columns["started_at"], "fsp", None) == 3


def test_processes_migrating_one_database_at_once_all_succeed(mysql_url: str) -> None:
    """Two events instances started together on a fresh database both migrate it: one
    failed with "Table 'prompt_banks' already exists" before the migration lock. Four
    processes at once now: each finishes, the database at head once."""
    import subprocess
    import sys

    script = (
        "import sys; from hazardwatch.storage import migrate; "
        "from hazardwatch.storage.engine import create_engine; "
        "migrate.upgrade(create_engine(sys.argv[1]))"
    )
    runs = [subprocess.Popen([sys.executable, "-c", script, mysql_url],
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]  # fmt: skip
    errors = [run.communicate(timeout=120)[1] for run in runs]
    assert [run.returncode for run in runs] == [0] * 4, errors
    engine = create_engine(mysql_url)
    assert _tables(engine) == TABLES
    assert migrate.current_revision(engine) == migrate.head_revision(engine)
    engine.dispose()
