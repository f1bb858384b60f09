"""Engine construction: per-dialect connection settings, with errors that hide credentials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError

from hazardwatch.errors import StorageError
from hazardwatch.redact import redact_text, redact_url

SUPPORTED_DIALECTS = ("sqlite", "mysql", "mariadb", "postgresql")


def create_engine(url: str, *, connect_timeout_s: float = 5.0) -> Engine:
    """An engine for `url`; SQLite files get their directory, WAL and foreign keys."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(
            f"database URL {redact_url(url)!r} cannot be parsed; expected e.g. "
            "sqlite:///data/hazardwatch.db or mysql+pymysql://user:pass@host:3306/hazardwatch"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_DIALECTS:
        raise StorageError(
            f"database URL {redact_url(url)!r} uses {backend!r}; "
            f"supported: {', '.join(SUPPORTED_DIALECTS)}"
        )
    kwargs: dict[str, Any] = {"future": True}
    if backend == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_pre_ping=True, pool_recycle=1800)
        if backend in ("mysql", "mariadb"):
            timeout = max(1, round(connect_timeout_s))
            kwargs["connect_args"] = {
                "connect_timeout": timeout,
                "read_timeout": 30,
                "write_timeout": 30,
                "init_command": "SET time_zone = '+00:00'",
            }
            if "charset" not in parsed.query:
                parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        elif backend == "postgresql":
            kwargs["connect_args"] = {"connect_timeout": max(1, round(connect_timeout_s))}
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise StorageError(
            f"cannot create a database engine for {redact_url(url)!r}: {exc}"
        ) from None
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def check_connection(engine: Engine) -> None:
    """Raise StorageError naming the (redacted) database when it does not answer."""
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)
        reason = str(orig) if orig is not None else str(exc)
        raise StorageError(
            f"database {engine.url.render_as_string(hide_password=True)!r} "
            f"is not reachable: {redact_text(reason)}"
        ) from None
