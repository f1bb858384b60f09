"""Alembic migrations driven from code: `hazardwatch migrate` and the tests use these."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
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


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    command.downgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()
