"""Alembic environment: the engine comes from hazardwatch (code) or the settings (alembic CLI)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Engine

from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.models import Base

config = context.config
target_metadata = Base.metadata


def _engine() -> Engine:
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine  # type: ignore[no-any-return]
    from hazardwatch.settings import load_settings

    return create_engine(load_settings().storage.resolved_url())


def run_migrations_online() -> None:
    with _engine().connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run hazardwatch migrate")
run_migrations_online()
