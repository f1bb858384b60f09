"""The SQL of keyframes (search, issue 26): stored with their embedding, read back in id
order to rebuild the vector index, looked up by id for results, re-embedded by
`hazardwatch reindex`, deleted with their thumbnails."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hazardwatch.records import KeyframeRecord
from hazardwatch.storage.models import Keyframe

UNKNOWN_KIND = "unknown"
_T = cast(sa.Table, Keyframe.__table__)
# How many rows one statement names at most (IN lists, executemany batches).
CHUNK = 500
# Keys looked up in one query: at most this squared equality ranges for the optimiser.
KEYS_A_QUERY = 64


@dataclass(frozen=True, slots=True)
class StoredKeyframe:
    """A keyframe as search shows it (no embedding)."""

    id: int
    camera: str
    ts: datetime
    event_uuid: str | None
    thumbnail_path: str
    model_name: str


@dataclass(frozen=True, slots=True)
class KeyframeVectors:
    """Rows of keyframes with their embeddings, in id order (index loading, reindex)."""

    ids: list[int]
    cameras: list[str]
    ts: list[float]  # seconds since the epoch
    embeddings: list[bytes]  # float16
    thumbnail_bytes: list[int]
    thumbnail_paths: list[str]


class KeyframeTable:
    """Reads and writes the `keyframes` table over the service's engine."""

    def __init__(
        self, engine: Engine, ensure_cameras: Callable[[Iterable[tuple[str, str]]], None]
    ) -> None:
        """`ensure_cameras`: registers cameras a keyframe names (the foreign key)."""
        self._engine = engine
        self._ensure_cameras = ensure_cameras

    def add(self, records: Sequence[KeyframeRecord]) -> list[int]:
        """Store the keyframes; their ids in the same order. A keyframe stored before (same
        camera and time: a frame delivered again, or an event's peak that was also sampled
        as a keyframe) keeps its row, and takes the event's uuid when it had none."""
        if not records:
            return []
        rows = [
            {
                "camera": r.camera,
                "ts": r.ts,
                "event_uuid": r.event_uuid,
                "model_name": r.model_name,
                "embedding": r.embedding,
                "thumbnail_path": r.thumbnail_path,
                "thumbnail_bytes": r.thumbnail_bytes,
            }
            for r in records
        ]
        self._ensure_cameras((camera, UNKNOWN_KIND) for camera in {r.camera for r in records})
        with self._engine.begin() as conn:
            found = _ids_of(conn, records)
            fresh = [row for r, row in zip(records, rows, strict=True) if _key(r) not in found]
            if fresh:
                conn.execute(sa.insert(_T), fresh)
                found = _ids_of(conn, records)
            for r in records:
                if r.event_uuid is not None:
                    conn.execute(
                        sa.update(_T)
                        .where(_T.c.id == found[_key(r)], _T.c.event_uuid.is_(None))
                        .values(event_uuid=r.event_uuid)
                    )
        return [found[_key(r)] for r in records]

    def delete_paths(self, paths: Sequence[str]) -> KeyframeVectors:
        """Delete the keyframes whose thumbnails retention removed; what was deleted
        (embeddings left out)."""
        gone = KeyframeVectors([], [], [], [], [], [])
        with self._engine.begin() as conn:
            for start in range(0, len(paths), CHUNK):
                chunk = list(paths[start : start + CHUNK])
                query = sa.select(
                    _T.c.id, _T.c.camera, _T.c.ts, _T.c.thumbnail_bytes, _T.c.thumbnail_path
                ).where(_T.c.thumbnail_path.in_(chunk))
                rows = conn.execute(query).all()
                if not rows:
                    continue
                conn.execute(sa.delete(_T).where(_T.c.id.in_([row.id for row in rows])))
                for row in rows:
                    gone.ids.append(int(row.id))
                    gone.cameras.append(row.camera)
                    gone.ts.append(row.ts.timestamp())
                    gone.thumbnail_bytes.append(int(row.thumbnail_bytes))
                    gone.thumbnail_paths.append(row.thumbnail_path)
        return gone

    def scan(
        self,
        *,
        model_name: str | None = None,
        other_models: bool = False,
        camera: str | None = None,
        since: datetime | None = None,
        batch: int = 10_000,
        after_id: int = 0,
    ) -> Iterator[KeyframeVectors]:
        """Keyframes in id order, `batch` rows at a time (keyset, so a long scan holds no
        cursor open): of `model_name`, or of every other model when `other_models`."""
        while True:
            query = (
                sa.select(
                    _T.c.id,
                    _T.c.camera,
                    _T.c.ts,
                    _T.c.embedding,
                    _T.c.thumbnail_bytes,
                    _T.c.thumbnail_path,
                )
                .where(_T.c.id > after_id)
                .order_by(_T.c.id)
                .limit(batch)
            )
            if model_name is not None:
                match = (
                    _T.c.model_name != model_name
                    if other_models
                    else (_T.c.model_name == model_name)
                )
                query = query.where(match)
            if camera is not None:
                query = query.where(_T.c.camera == camera)
            if since is not None:
                query = query.where(_T.c.ts >= since)
            with self._engine.connect() as conn:
                rows = conn.execute(query).all()
            if not rows:
                return
            yield KeyframeVectors(
                [int(r.id) for r in rows],
                [r.camera for r in rows],
                [r.ts.timestamp() for r in rows],
                [bytes(r.embedding) for r in rows],
                [int(r.thumbnail_bytes) for r in rows],
                [r.thumbnail_path for r in rows],
            )
            after_id = int(rows[-1].id)

    def count(
        self,
        *,
        model_name: str | None = None,
        other_models: bool = False,
        camera: str | None = None,
        since: datetime | None = None,
        after_id: int = 0,
    ) -> int:
        query = sa.select(sa.func.count()).select_from(_T).where(_T.c.id > after_id)
        if model_name is not None:
            query = query.where(
                _T.c.model_name != model_name if other_models else _T.c.model_name == model_name
            )
        if camera is not None:
            query = query.where(_T.c.camera == camera)
        if since is not None:
            query = query.where(_T.c.ts >= since)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def ids(self, *, model_name: str, up_to: int) -> npt.NDArray[np.int64]:
        """The ids of `model_name`'s keyframes up to `up_to` (checking a saved index)."""
        query = sa.select(_T.c.id).where(_T.c.model_name == model_name, _T.c.id <= up_to)
        with self._engine.connect() as conn:
            return np.fromiter(conn.execute(query).scalars(), np.int64)

    def sizes(self, *, model_name: str, up_to: int) -> dict[str, tuple[int, int]]:
        """Per camera: how many keyframes of `model_name` up to id `up_to`, and their
        thumbnails' bytes."""
        query = (
            sa.select(_T.c.camera, sa.func.count(), sa.func.sum(_T.c.thumbnail_bytes))
            .where(_T.c.model_name == model_name, _T.c.id <= up_to)
            .group_by(_T.c.camera)
        )
        with self._engine.connect() as conn:
            return {row[0]: (int(row[1]), int(row[2] or 0)) for row in conn.execute(query)}

    def get(self, ids: Sequence[int]) -> dict[int, StoredKeyframe]:
        out: dict[int, StoredKeyframe] = {}
        columns = (
            _T.c.id,
            _T.c.camera,
            _T.c.ts,
            _T.c.event_uuid,
            _T.c.thumbnail_path,
            _T.c.model_name,
        )
        with self._engine.connect() as conn:
            for start in range(0, len(ids), CHUNK):
                chunk = list(ids[start : start + CHUNK])
                for row in conn.execute(sa.select(*columns).where(_T.c.id.in_(chunk))):
                    out[int(row.id)] = StoredKeyframe(
                        int(row.id),
                        row.camera,
                        row.ts,
                        row.event_uuid,
                        row.thumbnail_path,
                        row.model_name,
                    )
        return out

    def embedding(self, keyframe_id: int) -> tuple[bytes, str] | None:
        """A keyframe's embedding (float16) and the model that made it."""
        query = sa.select(_T.c.embedding, _T.c.model_name).where(_T.c.id == keyframe_id)
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return (bytes(row.embedding), row.model_name) if row is not None else None

    def normal_embeddings(
        self, camera: str, *, model_name: str, limit: int
    ) -> npt.NDArray[np.float16]:
        """A camera's newest `limit` keyframes of `model_name` that are no event's peak,
        as float16 rows [N, D] (the prior of a class by example)."""
        query = (
            sa.select(_T.c.embedding)
            .where(_T.c.camera == camera, _T.c.model_name == model_name, _T.c.event_uuid.is_(None))
            .order_by(_T.c.ts.desc())
            .limit(limit)
        )
        with self._engine.connect() as conn:
            rows = [bytes(v) for v in conn.execute(query).scalars()]
        if not rows:
            return np.zeros((0, 0), np.float16)
        return np.frombuffer(b"".join(rows), np.float16).reshape(len(rows), -1)

    def cameras(self, *, model_name: str) -> list[str]:
        """The cameras with keyframes of `model_name`."""
        query = sa.select(_T.c.camera).where(_T.c.model_name == model_name).distinct()
        with self._engine.connect() as conn:
            return sorted(conn.execute(query).scalars())

    def set_embeddings(self, rows: Sequence[tuple[int, bytes]], model_name: str) -> None:
        """New embeddings for these keyframes, made by `model_name` (reindex)."""
        if not rows:
            return
        statement = (
            sa.update(_T)
            .where(_T.c.id == sa.bindparam("key"))
            .values(embedding=sa.bindparam("vector"), model_name=model_name)
        )
        with self._engine.begin() as conn:
            conn.execute(statement, [{"key": key, "vector": vector} for key, vector in rows])


def _key(record: KeyframeRecord) -> tuple[str, datetime]:
    return record.camera, _ms(record.ts)


def _ms(ts: datetime) -> datetime:
    """As stored: truncated to the millisecond (models.UTCDateTime)."""
    ts = ts.astimezone(UTC)
    return ts.replace(microsecond=ts.microsecond - ts.microsecond % 1000)


def _ids_of(
    conn: sa.Connection, records: Sequence[KeyframeRecord]
) -> dict[tuple[str, datetime], int]:
    """The stored ids of these keyframes' (camera, time) keys: one query a chunk of them
    (cameras × times, the unique index's equality ranges, filtered here to the pairs),
    not one a camera, which cost a round trip a camera when a thousand share a batch."""
    found: dict[tuple[str, datetime], int] = {}
    keys = sorted({_key(r) for r in records})
    for start in range(0, len(keys), KEYS_A_QUERY):
        chunk = keys[start : start + KEYS_A_QUERY]
        wanted = set(chunk)
        query = sa.select(_T.c.id, _T.c.camera, _T.c.ts).where(
            _T.c.camera.in_(sorted({camera for camera, _ in chunk})),
            _T.c.ts.in_(sorted({ts for _, ts in chunk})),
        )
        for row in conn.execute(query):
            if (row.camera, row.ts) in wanted:
                found[(row.camera, row.ts)] = int(row.id)
    return found
