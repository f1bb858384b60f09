from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.models import Base

TABLES = {"cameras", "events", "scores", "camera_states"}


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
    assert {("ts",), ("camera", "ts")} <= scores


def test_mysql_timestamps_keep_milliseconds(mysql_url: str) -> None:
    engine = create_engine(mysql_url)
    migrate.upgrade(engine)
    columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("events")}
    engine.dispose()
    assert getattr(columns["started_at"], "fsp", None) == 3
