"""What the storage tests share: a repository on each database, migrated."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hazardwatch.storage import migrate
from hazardwatch.storage.engine import create_engine
from hazardwatch.storage.repository import Repository


@pytest.fixture
def repo(database_url: str) -> Iterator[Repository]:
    engine = create_engine(database_url)
    migrate.upgrade(engine)
    yield Repository(engine)
    engine.dispose()
