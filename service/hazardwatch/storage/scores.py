"""The score series (`scores`) and the cameras' last-seen times, written the way a
thousand cameras need: each statement compiled once and run on the driver.

A thousand cameras at 0.5 scored frame/s write about 4,500 score rows a second, in small
batches. SQLAlchemy's per-row work on a compiled statement (cache key, bind processors,
parameter dicts) was most of the event writer's CPU there, and an UPDATE run with a row
per camera (executemany) is a round trip a camera on MySQL's driver; so the INSERT …
IGNORE of the rows and the UPDATE of `cameras.last_seen_at` (by CASE, a chunk of cameras
a statement) are compiled once each, in the driver's own parameter style, and a frame's
time is bound once for all its classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hazardwatch.records import ScoreSample
from hazardwatch.storage.models import Camera, ScoreRow

# Cameras whose last-seen time one statement moves (one compiled statement per count).
SEEN_A_STATEMENT = 64
COLUMNS = ("camera", "ts", "class_name", "score", "signal")  # of a score row
_SCORES = cast(sa.Table, ScoreRow.__table__)
_CAMERAS = cast(sa.Table, Camera.__table__)
_cameras = _CAMERAS.c
# A statement for the driver: its text, its parameters' positional order (none for named
# styles), and how a time is bound.
DriverSql = tuple[str, tuple[str, ...], Callable[[datetime], Any]]


class ScoreTable:
    def __init__(self, engine: Engine, insert_ignore: Any) -> None:
        """`insert_ignore`: the dialect's INSERT into `scores` that skips existing keys
        (a frame delivered again after a crash is stored once)."""
        self._engine = engine
        stmt = insert_ignore.values({n: sa.bindparam(n) for n in COLUMNS})
        self._insert = self._driver_sql(stmt, _SCORES.c.ts)
        order = self._insert[1]
        # Where each of the driver's positional parameters is in a row of COLUMNS.
        self._pick = [COLUMNS.index(name) for name in order] if order else None
        self._seen: dict[int, DriverSql] = {}

    def add(self, samples: Sequence[ScoreSample]) -> None:
        """Store the rows (their cameras registered by the caller) and move each camera's
        last-seen time, in one transaction."""
        sql, _, bind_ts = self._insert
        pick = self._pick
        bound: dict[datetime, Any] = {}  # a frame's classes share its time: bound once
        rows: list[Any] = []
        latest: dict[str, datetime] = {}
        for s in samples:
            ts = bound.get(s.ts)
            if ts is None:
                ts = bound[s.ts] = bind_ts(s.ts)
            signal = None if s.signal is None else float(s.signal)
            row = (s.camera, ts, s.class_name, float(s.score), signal)
            rows.append(
                tuple(row[i] for i in pick) if pick else dict(zip(COLUMNS, row, strict=True))
            )
            if s.camera not in latest or s.ts > latest[s.camera]:
                latest[s.camera] = s.ts
        with self._engine.begin() as conn:
            conn.exec_driver_sql(sql, rows)
            self.seen(conn, latest)

    def seen(self, conn: Any, latest: dict[str, datetime]) -> None:
        """cameras.last_seen_at: the newest frame time written for each camera (never
        back); one statement a chunk of cameras."""
        items = sorted(latest.items())
        for start in range(0, len(items), SEEN_A_STATEMENT):
            chunk = items[start : start + SEEN_A_STATEMENT]
            sql, order, bind_ts = self._seen_sql(len(chunk))
            params: dict[str, Any] = {}
            for i, (camera, ts) in enumerate(chunk):
                params[f"c{i}"], params[f"t{i}"] = camera, bind_ts(ts)
            conn.exec_driver_sql(sql, tuple(params[k] for k in order) if order else params)

    def list(
        self, camera: str, since: datetime, until: datetime, class_name: str | None = None
    ) -> list[ScoreSample]:
        query = (
            sa.select(_SCORES)
            .where(ScoreRow.camera == camera, ScoreRow.ts >= since, ScoreRow.ts < until)
            .order_by(ScoreRow.ts, ScoreRow.id)
        )
        if class_name is not None:
            query = query.where(ScoreRow.class_name == class_name)
        with self._engine.connect() as conn:
            return [
                ScoreSample(r.camera, r.ts, r.class_name, r.score, r.signal)
                for r in conn.execute(query)
            ]

    def _seen_sql(self, n: int) -> DriverSql:
        if n not in self._seen:
            column = _cameras.last_seen_at
            newest = sa.case(
                *(
                    (_cameras.name == sa.bindparam(f"c{i}"), sa.bindparam(f"t{i}"))
                    for i in range(n)
                ),
                else_=column,
            )
            stmt = (
                sa.update(_CAMERAS)
                .where(
                    _cameras.name.in_([sa.bindparam(f"c{i}") for i in range(n)]),
                    sa.or_(column.is_(None), column < newest),
                )
                .values(last_seen_at=newest)
            )
            self._seen[n] = self._driver_sql(stmt, column)
        return self._seen[n]

    def _driver_sql(self, stmt: Any, ts_column: Any) -> DriverSql:
        dialect = self._engine.dialect
        compiled = stmt.compile(dialect=dialect)
        order = tuple(compiled.positiontup or ()) if compiled.positional else ()
        process = ts_column.type.bind_processor(dialect)
        return compiled.string, order, process or (lambda v: v)
