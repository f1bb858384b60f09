"""The repository: the only module that speaks SQL. Event writes are idempotent by uuid."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Engine

from hazardwatch.records import EventRecord, EventStatus, ScoreSample, Severity, Verdict, Weather
from hazardwatch.storage.banks import BankTable
from hazardwatch.storage.fences import Fence, FenceTable
from hazardwatch.storage.keyframes import UNKNOWN_KIND, KeyframeTable
from hazardwatch.storage.models import Camera, CameraState, Event, EventReview, ScoreRow
from hazardwatch.storage.scores import ScoreTable

# A later write without a media path (the file failed, or was not made yet) keeps the old one.
WEATHER_COLUMNS = (
    "weather_code",
    "weather_text",
    "weather_temperature_c",
    "weather_precipitation_mm",
    "weather_wind_speed_kmh",
    "weather_visibility_m",
    "weather_observed_at",
)
# Set once and never cleared by a later write of the same event that lacks them.
_EVENT_MEDIA = (
    "snapshot_path",
    "clip_path",
    "peak_embedding",
    "opened_statistic",
    "opened_threshold",
    *WEATHER_COLUMNS,
)
_EVENT_MUTABLE = (
    "status",
    "ended_at",
    "peak_at",
    "peak_score",
    "mean_score",
    "severity",
    "snapshot_path",
    "clip_path",
    "peak_embedding",
    "model_name",
    "prompt_bank_version",
    "opened_statistic",
    "opened_threshold",
    *WEATHER_COLUMNS,
    "updated_at",
)
MAX_PAGE = 1000


def _now() -> datetime:
    return datetime.now(UTC)


class Repository:
    """Reads and writes cameras, events and the score series over one SQLAlchemy engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._known_cameras: set[tuple[str, str]] = set()  # (name, kind) registered
        self.keyframes = KeyframeTable(engine, self.ensure_cameras)
        self.scores = ScoreTable(engine, self._insert_ignore(cast(sa.Table, ScoreRow.__table__)))
        self.banks = BankTable(engine)
        self.fences = FenceTable(engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    # ------------------------------------------------------------------ helpers

    def _insert(self, table: sa.Table) -> Any:
        if self._dialect in ("mysql", "mariadb"):
            return mysql.insert(table)
        if self._dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _insert_ignore(self, table: sa.Table) -> Any:
        """An INSERT that skips rows whose key exists, executed with a list of rows (one
        compiled statement, cached, and the driver's executemany: not a VALUES clause of
        every row compiled again on each call)."""
        stmt = self._insert(table)
        if self._dialect in ("mysql", "mariadb"):
            return stmt.prefix_with("IGNORE")
        return stmt.on_conflict_do_nothing()

    # ------------------------------------------------------------------ cameras

    def ensure_cameras(self, cameras: Iterable[tuple[str, str]]) -> None:
        """Register (name, source kind) pairs; existing cameras keep their rows, but one
        registered as "unknown" (by calibration, or by scores that came before the camera
        was known) takes the kind once it is known."""
        rows = [
            {"name": name, "source_kind": kind, "created_at": _now()}
            for name, kind in cameras
            if (name, kind) not in self._known_cameras
        ]
        if not rows:
            return
        known = [{"camera": r["name"], "kind": r["source_kind"]} for r in rows]
        known = [k for k in known if k["kind"] != UNKNOWN_KIND]
        with self._engine.begin() as conn:
            conn.execute(self._insert_ignore(Camera.__table__), rows)  # type: ignore[arg-type]
            if known:
                conn.execute(_KIND, known)
        self._known_cameras.update((str(r["name"]), str(r["source_kind"])) for r in rows)
        # Once a kind is known, scores registering the camera as unknown need nothing.
        self._known_cameras.update((str(k["camera"]), UNKNOWN_KIND) for k in known)

    def list_cameras(self) -> list[dict[str, Any]]:
        with self._engine.connect() as conn:
            result = conn.execute(sa.select(Camera.__table__).order_by(Camera.name))
            return [dict(row._mapping) for row in result]

    def scores_stored_until(self) -> dict[str, datetime]:
        """Each camera's newest stored score time: one index lookup per camera on the
        unique key (camera, ts, …), not a GROUP BY over the whole series at start-up."""
        out = {}
        with self._engine.connect() as conn:
            for camera in conn.execute(sa.select(Camera.name)).scalars():
                newest = sa.select(sa.func.max(ScoreRow.ts)).where(ScoreRow.camera == camera)
                ts = conn.execute(newest).scalar()
                if ts is not None:
                    out[camera] = ts
        return out

    # ------------------------------------------------------------------ events

    def upsert_event(self, event: EventRecord, fence: Fence | None = None) -> None:
        """Insert or update the event with this uuid; an older revision never wins.
        With `fence`: FencedError, nothing written, when its partition was taken since."""
        self.ensure_cameras([(event.camera, "unknown")])
        now = _now()
        values = {
            "uuid": event.uuid,
            "camera": event.camera,
            "class_name": event.class_name,
            "severity": event.severity,
            "status": event.status,
            "started_at": event.started_at,
            "ended_at": event.ended_at,
            "peak_at": event.peak_at,
            "peak_score": float(event.peak_score),
            "mean_score": float(event.mean_score),
            "snapshot_path": event.snapshot_path,
            "clip_path": event.clip_path,
            "model_name": event.model_name,
            "prompt_bank_version": event.prompt_bank_version,
            "revision": event.revision,
            "peak_embedding": event.peak_embedding,
            "opened_statistic": event.opened_statistic,
            "opened_threshold": event.opened_threshold,
            **weather_values(event.weather),
            "created_at": now,
            "updated_at": now,
        }
        table = Event.__table__
        stmt = self._insert(table).values(values)  # type: ignore[arg-type]
        if self._dialect in ("mysql", "mariadb"):
            newer = stmt.inserted.revision >= table.c.revision
            # MySQL applies assignments left to right: revision must be updated last.
            assignments = [
                (name, sa.func.if_(newer, _new_value(stmt.inserted, table, name), table.c[name]))
                for name in _EVENT_MUTABLE
            ]
            assignments.append(
                ("revision", sa.func.if_(newer, stmt.inserted.revision, table.c.revision))
            )
            stmt = stmt.on_duplicate_key_update(assignments)
        else:
            stmt = stmt.on_conflict_do_update(
                index_elements=["uuid"],
                set_={
                    name: _new_value(stmt.excluded, table, name)
                    for name in (*_EVENT_MUTABLE, "revision")
                },
                where=stmt.excluded.revision >= table.c.revision,
            )
        with self._engine.begin() as conn:
            if fence is not None:
                self.fences.check(conn, fence)
            conn.execute(stmt)
            self.scores.seen(conn, {event.camera: event.peak_at})

    def set_clip_path(self, uuid: str, clip_path: str) -> bool:
        """Link a finished clip to its event; False when no such event is stored."""
        with self._engine.begin() as conn:
            result = conn.execute(
                sa.update(Event).where(Event.uuid == uuid).values(clip_path=clip_path)
            )
            return bool(result.rowcount)

    def set_weather(self, uuid: str, weather: Weather) -> bool:
        """Attach weather that arrived after the event was stored; False when no such event."""
        with self._engine.begin() as conn:
            result = conn.execute(
                sa.update(Event).where(Event.uuid == uuid).values(**weather_values(weather))
            )
            return bool(result.rowcount)

    def forget_media(self, paths: Sequence[str]) -> int:
        """Clear event links to media files that retention removed; returns rows changed."""
        changed = 0
        with self._engine.begin() as conn:
            for start in range(0, len(paths), 500):
                chunk = list(paths[start : start + 500])
                for column in (Event.snapshot_path, Event.clip_path):
                    result = conn.execute(
                        sa.update(Event).where(column.in_(chunk)).values({column.key: None})
                    )
                    changed += int(result.rowcount)
        return changed

    def ping(self) -> None:
        """Raise SQLAlchemyError unless the database answers."""
        with self._engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def get_event(self, uuid: str) -> EventRecord | None:
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(Event.__table__).where(Event.uuid == uuid)).first()
        return _to_record(row._mapping) if row is not None else None

    def event_spans(
        self, camera: str, since: datetime, until: datetime
    ) -> list[tuple[datetime, datetime]]:
        """(start, end) of the camera's events that overlap [since, until); an open event
        ends at `until`. Calibration from history leaves these out."""
        query = sa.select(Event.started_at, Event.ended_at).where(
            Event.camera == camera,
            Event.started_at < until,
            sa.or_(Event.ended_at.is_(None), Event.ended_at >= since),
        )
        with self._engine.connect() as conn:
            return [
                (row.started_at, row.ended_at if row.ended_at is not None else until)
                for row in conn.execute(query)
            ]

    def list_events(
        self,
        *,
        camera: str | None = None,
        class_name: str | None = None,
        status: EventStatus | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        min_score: float | None = None,
        verdict: Verdict | None = None,
        reviewed_by: str | None = None,
        reviewed: bool | None = None,
        limit: int = 100,
        offset: int = 0,
        before: str | None = None,
        after: str | None = None,
    ) -> list[EventRecord]:
        """Events newest first; `since` (inclusive) and `until` (exclusive) bound started_at;
        `reviewed`: only those `reviewed_by` has (True) or has not (False) opened.

        Keyset pages: `before` (an event's uuid) gives the events listed after that one,
        `after` those listed before it, both those between the two (still newest first),
        each read from the index at any depth, where `offset` counts its way there.
        Raises KeyError for a uuid that is not stored."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit={limit} must be between 1 and {MAX_PAGE}")
        if offset < 0:
            raise ValueError(f"offset={offset} must be >= 0")
        conditions = [
            Event.camera == camera if camera is not None else None,
            Event.class_name == class_name if class_name is not None else None,
            Event.status == status if status is not None else None,
            Event.started_at >= since if since is not None else None,
            Event.started_at < until if until is not None else None,
            Event.peak_score >= min_score if min_score is not None else None,
            Event.verdict == verdict if verdict is not None else None,
        ]
        if reviewed is not None and reviewed_by is not None:
            seen = _reviewed_by(reviewed_by)
            conditions.append(seen if reviewed else ~seen)
        query = sa.select(Event.__table__).where(*(c for c in conditions if c is not None))
        with self._engine.connect() as conn:
            if before is not None:
                query = query.where(self._keyset(conn, before, older=True))
            if after is not None:
                query = query.where(self._keyset(conn, after, older=False))
            upwards = after is not None and before is None  # read from `after` up, then turned
            if upwards:
                query = query.order_by(Event.started_at, Event.id)
            else:
                query = query.order_by(Event.started_at.desc(), Event.id.desc())
            query = query.limit(limit).offset(offset)
            rows = [_to_record(row._mapping) for row in conn.execute(query)]
        return rows[::-1] if upwards else rows

    @staticmethod
    def _keyset(conn: Any, uuid: str, *, older: bool) -> sa.ColumnElement[bool]:
        """The events listed after (`older`) or before the event `uuid`, newest first:
        by (started_at, id), the order of the list, which the indexes hold."""
        key = conn.execute(sa.select(Event.started_at, Event.id).where(Event.uuid == uuid)).first()
        if key is None:
            raise KeyError(uuid)
        at, id_ = key
        if older:
            return sa.or_(Event.started_at < at, sa.and_(Event.started_at == at, Event.id < id_))
        return sa.or_(Event.started_at > at, sa.and_(Event.started_at == at, Event.id > id_))

    def mark_reviewed(self, uuid: str, reviewer: str) -> bool:
        """`reviewer` has opened the event (again: the first time stays); False when no
        such event is stored."""
        with self._engine.begin() as conn:
            if conn.execute(sa.select(Event.id).where(Event.uuid == uuid)).first() is None:
                return False
            row = {"reviewer": reviewer, "event_uuid": uuid, "reviewed_at": _now()}
            conn.execute(self._insert_ignore(EventReview.__table__), [row])  # type: ignore[arg-type]
        return True

    def reviewed_among(self, uuids: Collection[str], reviewer: str) -> set[str]:
        """Which of these events `reviewer` has opened."""
        if not uuids:
            return set()
        query = sa.select(EventReview.event_uuid).where(
            EventReview.reviewer == reviewer, EventReview.event_uuid.in_(list(uuids))
        )
        with self._engine.connect() as conn:
            return {row[0] for row in conn.execute(query)}

    def unreviewed_by_camera(self, reviewer: str, since: datetime | None = None) -> dict[str, int]:
        """Per camera, the events (started since `since`) `reviewer` has not opened yet."""
        query = sa.select(Event.camera, sa.func.count()).where(~_reviewed_by(reviewer))
        if since is not None:
            query = query.where(Event.started_at >= since)
        with self._engine.connect() as conn:
            rows = conn.execute(query.group_by(Event.camera))
            return {str(camera): int(count) for camera, count in rows}

    def open_by_camera(self) -> dict[str, int]:
        """Per camera, its events open now."""
        query = sa.select(Event.camera, sa.func.count()).where(Event.status == "open")
        with self._engine.connect() as conn:
            rows = conn.execute(query.group_by(Event.camera))
            return {str(camera): int(count) for camera, count in rows}

    def close_open_events(
        self,
        ended_at: datetime,
        status: EventStatus = "interrupted",
        cameras: Collection[str] | None = None,
    ) -> int:
        """Close the events still open (left by a run that died) of `cameras` — the ones
        the restarting node owns; None: every camera (the node that owns them all).
        Returns how many."""
        query = sa.update(Event).where(Event.status == "open")
        if cameras is not None:
            query = query.where(Event.camera.in_(list(cameras)))
        with self._engine.begin() as conn:
            result = conn.execute(
                query.values(
                    status=status,
                    ended_at=sa.func.coalesce(
                        Event.ended_at, sa.literal(ended_at, type_=Event.__table__.c.ended_at.type)
                    ),
                    updated_at=_now(),
                    revision=Event.revision + 1,
                )
            )
            return int(result.rowcount)

    def set_verdict(
        self, uuid: str, verdict: Verdict, note: str | None, by: str | None = None
    ) -> EventRecord | None:
        """Record an operator's verdict on an event, and who gave it (`by`: the API user);
        None when no such event is stored."""
        with self._engine.begin() as conn:
            result = conn.execute(
                sa.update(Event)
                .where(Event.uuid == uuid)
                .values(
                    verdict=verdict,
                    verdict_note=note,
                    verdict_at=_now(),
                    verdict_by=by,
                    updated_at=_now(),
                )
            )
            if not result.rowcount:
                return None
            row = conn.execute(sa.select(Event.__table__).where(Event.uuid == uuid)).one()
        return _to_record(row._mapping)

    # ------------------------------------------------------------------ camera states

    def load_camera_states(self) -> dict[str, str]:
        """Every stored camera state as JSON text, by camera name."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(CameraState.camera, CameraState.state))
            return {row.camera: row.state for row in rows}

    def save_camera_state(
        self,
        camera: str,
        state: str,
        source: str,
        references: int,
        calibrated_at: float = 0.0,
        *,
        replace_newer: bool = False,
        fence: Fence | None = None,
    ) -> bool:
        """Insert or replace one camera's state (JSON text of `CameraNormal`).

        A stored state calibrated after `calibrated_at` is kept (a running service must not
        overwrite a calibration made beside it) unless `replace_newer`; returns whether
        this state was stored. With `fence`: FencedError, nothing written, when its partition
        was taken since.
        """
        values = {
            "camera": camera,
            "state": state,
            "source": source,
            "references": references,
            "updated_at": _now(),
        }
        table = CameraState.__table__
        with self._engine.begin() as conn:
            if fence is not None:
                self.fences.check(conn, fence)
            if not replace_newer:
                stored = conn.execute(
                    sa.select(CameraState.state).where(CameraState.camera == camera)
                ).scalar()
                if stored is not None and _calibrated_at(stored) > calibrated_at:
                    return False
            stmt = self._insert(table).values(values)  # type: ignore[arg-type]
            changed = {k: v for k, v in values.items() if k != "camera"}
            if self._dialect in ("mysql", "mariadb"):
                stmt = stmt.on_duplicate_key_update(changed)
            else:
                stmt = stmt.on_conflict_do_update(index_elements=["camera"], set_=changed)
            conn.execute(stmt)
        return True

    # ------------------------------------------------------------------ scores

    def add_scores(self, samples: Sequence[ScoreSample]) -> None:
        if not samples:
            return
        self.ensure_cameras((name, UNKNOWN_KIND) for name in {s.camera for s in samples})
        self.scores.add(samples)

    def list_scores(
        self, camera: str, since: datetime, until: datetime, class_name: str | None = None
    ) -> list[ScoreSample]:
        return self.scores.list(camera, since, until, class_name)


_CAMERAS = cast(sa.Table, Camera.__table__)
_cameras = _CAMERAS.c


_KIND = (
    sa.update(_CAMERAS)
    .where(_cameras.name == sa.bindparam("camera"), _cameras.source_kind == UNKNOWN_KIND)
    .values(source_kind=sa.bindparam("kind"))
)


def _calibrated_at(state: str) -> float:
    try:
        return float(json.loads(state).get("calibrated_at", 0.0))
    except (ValueError, TypeError, AttributeError):
        return 0.0  # unreadable: anything may replace it


def _new_value(new: Any, table: Any, name: str) -> Any:
    if name in _EVENT_MEDIA:
        return sa.func.coalesce(new[name], table.c[name])
    return new[name]


def _reviewed_by(reviewer: str) -> sa.ColumnElement[bool]:
    """The event has been opened by `reviewer` (an index lookup per event: the review
    table's key starts with the reviewer)."""
    return (
        sa.select(EventReview.event_uuid)
        .where(EventReview.reviewer == reviewer, EventReview.event_uuid == Event.uuid)
        .exists()
    )


def _to_record(row: Any) -> EventRecord:
    severity: Severity = row["severity"]
    status: EventStatus = row["status"]
    return EventRecord(
        uuid=row["uuid"],
        camera=row["camera"],
        class_name=row["class_name"],
        severity=severity,
        status=status,
        started_at=row["started_at"],
        ended_at=row["ended_at"],
        peak_at=row["peak_at"],
        peak_score=row["peak_score"],
        mean_score=row["mean_score"],
        snapshot_path=row["snapshot_path"],
        clip_path=row["clip_path"],
        model_name=row["model_name"],
        prompt_bank_version=row["prompt_bank_version"],
        revision=row["revision"],
        peak_embedding=row["peak_embedding"],
        verdict=row["verdict"],
        verdict_note=row["verdict_note"],
        verdict_at=row["verdict_at"],
        verdict_by=row["verdict_by"],
        weather=_weather(row),
        opened_statistic=row["opened_statistic"],
        opened_threshold=row["opened_threshold"],
    )


def weather_values(weather: Weather | None) -> dict[str, Any]:
    """The event row's weather columns (all None without weather)."""
    if weather is None:
        return dict.fromkeys(WEATHER_COLUMNS)
    return {
        "weather_code": weather.code,
        "weather_text": weather.text,
        "weather_temperature_c": weather.temperature_c,
        "weather_precipitation_mm": weather.precipitation_mm,
        "weather_wind_speed_kmh": weather.wind_speed_kmh,
        "weather_visibility_m": weather.visibility_m,
        "weather_observed_at": weather.observed_at,
    }


def _weather(row: Any) -> Weather | None:
    if row["weather_code"] is None:
        return None
    return Weather(
        code=row["weather_code"],
        text=row["weather_text"] or "",
        temperature_c=row["weather_temperature_c"],
        precipitation_mm=row["weather_precipitation_mm"],
        wind_speed_kmh=row["weather_wind_speed_kmh"],
        visibility_m=row["weather_visibility_m"],
        observed_at=row["weather_observed_at"],
    )
