"""The database's own fencing tokens for the scores' partitions.

The broker's leases say who owns a partition, but a process paused past its lease (SIGSTOP,
a stalled VM) can run again in the middle of a write. So the storage checks too: an events
instance that takes a partition draws the partition's next token here, in one transaction,
before it reads that partition's camera states; each event and camera-state write of one of
its cameras checks, in the write's own transaction and under a shared lock on the
partition's row, that its token is still the newest. A paused owner that runs again finds a
newer token and its write is refused (`FencedError`); a write already in its transaction when
the takeover comes commits first, because the new owner's draw waits on the row's lock, so
the new owner reads it. The tokens come from the database, not the broker: wiping the
broker's data cannot make them go backwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from hazardwatch.errors import HazardwatchError
from hazardwatch.storage.models import PartitionFence

_T = cast(sa.Table, PartitionFence.__table__)


class FencedError(HazardwatchError):
    """Another instance has taken the partition since this one's token was drawn."""


@dataclass(frozen=True, slots=True)
class Fence:
    partition: int
    token: int


class FenceTable:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def take(self, partition: int, node: str) -> Fence:
        """The partition's next token, drawn for `node` (the newest from now on)."""
        try:
            return self._draw(partition, node)
        except sa.exc.IntegrityError:  # two first draws at once: the row is there now
            return self._draw(partition, node)

    def _draw(self, partition: int, node: str) -> Fence:
        row = _T.c.partition_no == partition
        with self._engine.begin() as conn:
            token = conn.execute(sa.select(_T.c.token).where(row).with_for_update()).scalar()
            values = {"node": node, "taken_at": datetime.now(UTC)}
            if token is None:
                token = 1
                conn.execute(sa.insert(_T).values(partition_no=partition, token=token, **values))
            else:
                token += 1
                conn.execute(sa.update(_T).where(row).values(token=token, **values))
        return Fence(partition, token)

    @staticmethod
    def check(conn: Connection, fence: Fence) -> None:
        """Raises FencedError, inside the caller's transaction (which then rolls back), when
        a newer token than `fence`'s was drawn; the row stays share-locked until that
        transaction ends, so no token is drawn in between."""
        newest = conn.execute(
            sa.select(_T.c.token)
            .where(_T.c.partition_no == fence.partition)
            .with_for_update(read=True)
        ).scalar()
        if newest is not None and newest != fence.token:
            raise FencedError(
                f"partition {fence.partition} was taken over (token {newest}, this "
                f"instance's {fence.token}); the write is refused"
            )

    def newest(self) -> dict[int, tuple[int, str]]:
        """Per partition: the newest token and the node it was drawn for."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_T.c.partition_no, _T.c.token, _T.c.node))
            return {int(r.partition_no): (int(r.token), str(r.node)) for r in rows}
