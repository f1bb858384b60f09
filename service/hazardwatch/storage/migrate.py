"""Alembic migrations driven from code: `hazardwatch migrate` and the tests use these."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

from hazardwatch.errors import StorageError


def migrations_dir() -> Path:
    """The Alembic script directory shipped with the package (a wheel carries it)."""
    candidate = Path(str(resources.files("hazardwatch") / "migrations"))
    if (candidate / "env.py").is_file():
        return candidate
    raise StorageError(
        f"the migrations were not found in the installed package ({candidate}); reinstall "
        "hazardwatch (pip install .) from a source tree that has migrations/"
    )


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", migrations_dir().as_posix())
    # Pass the engine itself: a URL in the ini options would break on '%' in passwords.
    config.attributes["engine"] = engine
    return config


LOCK_NAME = "hazardwatch.migrate"
LOCK_WAIT_S = 300


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision`. On MySQL/MariaDB under a named lock: processes started
    together on one database (two events instances, `hazardwatch migrate` beside a
    service) migrate one after the other, the later finding the work done, instead of
    both creating the same table."""
    if engine.dialect.name not in ("mysql", "mariadb"):
        command.upgrade(alembic_config(engine), revision)
        return
    with engine.connect() as connection:
        got = connection.execute(
            text("SELECT GET_LOCK(:name, :wait)"), {"name": LOCK_NAME, "wait": LOCK_WAIT_S}
        ).scalar()
        if got != 1:
            raise StorageError(
                f"another process held the migration lock for {LOCK_WAIT_S} s; is a "
                "`hazardwatch migrate` stuck? Run it again once that one has finished"
            )
        try:
            command.upgrade(alembic_config(engine), revision)
        finally:
            connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": LOCK_NAME})


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
