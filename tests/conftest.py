"""Shared fixtures: real services (MariaDB), the ../shared data, temporary databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import sqlalchemy as sa

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("HAZARDWATCH_TEST_SHARED_DIR", REPO_ROOT.parent / "shared"))
# CI sets HAZARDWATCH_TEST_STRICT=1: a missing service or data set is then a failure.
STRICT = os.environ.get("HAZARDWATCH_TEST_STRICT") == "1"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with a clear reason on a developer machine; fail in CI where all must be present."""
    if STRICT:
        pytest.fail(f"{reason} (HAZARDWATCH_TEST_STRICT=1: required in CI)")
    pytest.skip(reason)


MYSQL_SERVER_URL = os.environ.get(
    "HAZARDWATCH_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/"
)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED_DIR.is_dir():
        skip_or_fail(f"shared data not found at {SHARED_DIR} (it lives beside the repository)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[sa.Engine]:
    """An engine on the MariaDB/MySQL server (no database selected); skip if none answers."""
    engine = sa.create_engine(MYSQL_SERVER_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as exc:
        engine.dispose()
        skip_or_fail(
            f"no MySQL/MariaDB server answers at {engine.url.render_as_string()} "
            f"({exc.orig}); set HAZARDWATCH_TEST_MYSQL_URL to point at one"
        )
    yield engine
    engine.dispose()


@pytest.fixture
def mysql_url(mysql_server: sa.Engine) -> Iterator[str]:
    """A fresh, empty database on the server for one test, dropped afterwards."""
    name = f"hw_test_{uuid.uuid4().hex[:12]}"
    with mysql_server.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = mysql_server.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with mysql_server.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{(tmp_path / 'hazardwatch.db').as_posix()}"


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each storage test runs on SQLite and on the real MariaDB."""
    fixture = "sqlite_url" if request.param == "sqlite" else "mysql_url"
    return str(request.getfixturevalue(fixture))
