"""Alembic migrations driven from code: `hazardwatch migrate` and the tests use these."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from hazardwatch.errors import StorageError

_REPO_ROOT = Path(__file__).resolve().parents[3]


def migrations_dir() -> Path:
    """The Alembic script directory: <repo>/migrations, or ./migrations in the working dir."""
    for candidate in (_REPO_ROOT / "migrations", Path.cwd() / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StorageError(
        "the migrations/ directory was not found next to the package or in the working "
        "directory; install hazardwatch from its source tree (pip install -e .) or run "
        "from the repository root"
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
