"""The SQL of prompt bank versions (`/api/v1/classes`): the newest is the live bank."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hazardwatch.storage.models import PromptBankVersion

_T = cast(sa.Table, PromptBankVersion.__table__)


@dataclass(frozen=True, slots=True)
class StoredBank:
    version: str
    text: str
    created_at: datetime
    created_by: str
    action: str
    class_name: str
    diff: str


class BankTable:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def latest(self) -> StoredBank | None:
        """The live bank version, or None when the API never changed the bank."""
        query = sa.select(_T).order_by(_T.c.id.desc()).limit(1)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return _stored(row) if row is not None else None

    def latest_version(self) -> str | None:
        query = sa.select(_T.c.version).order_by(_T.c.id.desc()).limit(1)
        with self._engine.connect() as conn:
            return cast(str | None, conn.execute(query).scalar())

    def get(self, version: str) -> StoredBank | None:
        query = sa.select(_T).where(_T.c.version == version).order_by(_T.c.id.desc()).limit(1)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return _stored(row) if row is not None else None

    def add(
        self, version: str, text: str, by: str, action: str, class_name: str, diff: str
    ) -> None:
        """Store a new live version (a change undone makes an earlier version live again:
        a new row of the same version, so the history shows it)."""
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            conn.execute(
                sa.insert(_T).values(
                    version=version, text=text, created_at=now, created_by=by, action=action,
                    class_name=class_name, diff=diff,
                )
            )  # fmt: skip

    def history(self, limit: int = 100) -> list[StoredBank]:
        query = sa.select(_T).order_by(_T.c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            return [_stored(row) for row in conn.execute(query)]


def _stored(row: sa.Row[tuple[object, ...]]) -> StoredBank:
    m = row._mapping
    return StoredBank(
        m["version"], m["text"], m["created_at"], m["created_by"], m["action"],
        m["class_name"], m["diff"],
    )  # fmt: skip
