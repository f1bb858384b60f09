"""SQLAlchemy 2.0 typed models. Timestamps are stored as UTC with millisecond precision."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
MYSQL_TABLE_ARGS = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored naive UTC, truncated to ms.

    MySQL gets DATETIME(3); SQLite keeps ISO text. Naive datetimes are refused rather
    than guessed at, because a wrong zone silently shifts every dashboard.
    """

    impl = sa.DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "mysql":
            return dialect.type_descriptor(mysql.DATETIME(fsp=3))
        return dialect.type_descriptor(sa.DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()}: pass a timezone-aware datetime")
        value = value.astimezone(UTC).replace(tzinfo=None)
        return value.replace(microsecond=value.microsecond - value.microsecond % 1000)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


# SQLite only auto-increments INTEGER PRIMARY KEY, not BIGINT.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Score: sa.Double[float] = sa.Double()


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Camera(Base):
    """A configured camera; only its name and kind of source, never its URL."""

    __tablename__ = "cameras"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    source_kind: Mapped[str] = mapped_column(sa.String(16), default="unknown")
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime | None]


class Event(Base):
    """A hazard event; one row per uuid, updated in place as the event evolves."""

    __tablename__ = "events"
    __table_args__ = (
        sa.Index("ix_events_started_at", "started_at"),
        sa.Index("ix_events_camera_started_at", "camera", "started_at"),
        sa.Index("ix_events_class_name_started_at", "class_name", "started_at"),
        sa.Index("ix_events_status", "status"),
        sa.CheckConstraint("status IN ('open', 'closed', 'interrupted')", name="status"),
        sa.CheckConstraint("severity IN ('info', 'warning', 'critical')", name="severity"),
        sa.CheckConstraint(
            "verdict IS NULL OR verdict IN ('false_alarm', 'confirmed')", name="verdict"
        ),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    uuid: Mapped[str] = mapped_column(sa.String(36), unique=True)
    camera: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("cameras.name", onupdate="CASCADE")
    )
    class_name: Mapped[str] = mapped_column(sa.String(64))
    severity: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[str] = mapped_column(sa.String(16))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    peak_at: Mapped[datetime]
    peak_score: Mapped[float] = mapped_column(Score)
    mean_score: Mapped[float] = mapped_column(Score)
    snapshot_path: Mapped[str | None] = mapped_column(sa.String(512))
    clip_path: Mapped[str | None] = mapped_column(sa.String(512))
    model_name: Mapped[str] = mapped_column(sa.String(128))
    prompt_bank_version: Mapped[str] = mapped_column(sa.String(64))
    revision: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Operator feedback; a false alarm teaches the camera's normal references.
    verdict: Mapped[str | None] = mapped_column(sa.String(16))
    verdict_note: Mapped[str | None] = mapped_column(sa.String(1000))
    verdict_at: Mapped[datetime | None]
    verdict_by: Mapped[str | None] = mapped_column(sa.String(64))  # the API user
    # The peak frame's CLIP image embedding, float16 as base64 (see detect/normal.py).
    peak_embedding: Mapped[str | None] = mapped_column(sa.Text)
    # Weather at the camera's location when the event started (outputs/weather.py).
    weather_code: Mapped[int | None] = mapped_column(sa.SmallInteger)
    weather_text: Mapped[str | None] = mapped_column(sa.String(64))
    weather_temperature_c: Mapped[float | None] = mapped_column(Score)
    weather_precipitation_mm: Mapped[float | None] = mapped_column(Score)
    weather_wind_speed_kmh: Mapped[float | None] = mapped_column(Score)
    weather_visibility_m: Mapped[float | None] = mapped_column(Score)
    weather_observed_at: Mapped[datetime | None]
    # The detector's statistic and threshold when the event opened (detect/detector.py).
    opened_statistic: Mapped[float | None] = mapped_column(Score)
    opened_threshold: Mapped[float | None] = mapped_column(Score)


LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")


class EventReview(Base):
    """An event a user of the review page has opened: reviewed, for that user."""

    __tablename__ = "event_reviews"
    __table_args__ = (
        sa.PrimaryKeyConstraint("reviewer", "event_uuid"),
        sa.Index("ix_event_reviews_event_uuid", "event_uuid"),
        MYSQL_TABLE_ARGS,
    )

    reviewer: Mapped[str] = mapped_column(sa.String(64))
    event_uuid: Mapped[str] = mapped_column(
        sa.String(36), sa.ForeignKey("events.uuid", ondelete="CASCADE")
    )
    reviewed_at: Mapped[datetime]


class CameraState(Base):
    """A camera's learned normal (`CameraNormal` as JSON), kept across restarts."""

    __tablename__ = "camera_states"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    camera: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    state: Mapped[str] = mapped_column(LongText)
    source: Mapped[str] = mapped_column(sa.String(16))
    references: Mapped[int] = mapped_column(sa.Integer)
    updated_at: Mapped[datetime]


class ScoreRow(Base):
    """The per-camera, per-class score series that Grafana plots."""

    __tablename__ = "scores"
    __table_args__ = (
        sa.Index("ix_scores_ts", "ts"),
        # One row per camera, frame time and class: a redelivered frame is stored once.
        sa.Index("uq_scores_camera_ts_class", "camera", "ts", "class_name", unique=True),
        sa.Index("ix_scores_class_name_ts", "class_name", "ts"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    camera: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("cameras.name", onupdate="CASCADE")
    )
    ts: Mapped[datetime]
    class_name: Mapped[str] = mapped_column(sa.String(64))
    score: Mapped[float] = mapped_column(Score)
    # What the detector compared with its thresholds (smoothed − baseline); hazards only.
    signal: Mapped[float | None] = mapped_column(Score)


class Keyframe(Base):
    """A frame kept for search: its CLIP embedding (float16) and thumbnail (issue 26).

    Retention deletes the thumbnail file and with it the row (`Repository.forget_media`);
    the vector index (search/index.py) is rebuilt from these rows."""

    __tablename__ = "keyframes"
    __table_args__ = (
        # One row per camera and frame time: a frame delivered again is stored once.
        sa.Index("uq_keyframes_camera_ts", "camera", "ts", unique=True),
        sa.Index("ix_keyframes_ts", "ts"),
        sa.Index("ix_keyframes_event_uuid", "event_uuid"),
        sa.Index("ix_keyframes_thumbnail_path", "thumbnail_path"),
        MYSQL_TABLE_ARGS,
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    camera: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("cameras.name", onupdate="CASCADE")
    )
    ts: Mapped[datetime]
    event_uuid: Mapped[str | None] = mapped_column(sa.String(36))
    model_name: Mapped[str] = mapped_column(sa.String(128))
    embedding: Mapped[bytes] = mapped_column(sa.LargeBinary)  # float16, unit length
    thumbnail_path: Mapped[str] = mapped_column(sa.String(255))
    thumbnail_bytes: Mapped[int] = mapped_column(sa.Integer)


class PromptBankVersion(Base):
    """A version of the prompt bank edited through the API (`/api/v1/classes`): the whole
    bank as YAML, who made it, when, and what changed. The newest is the live bank."""

    __tablename__ = "prompt_banks"
    # A version may come back (a change undone): a new row, the same version.
    __table_args__ = (sa.Index("ix_prompt_banks_version", "version"), MYSQL_TABLE_ARGS)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(sa.String(64))
    text: Mapped[str] = mapped_column(LongText)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(16))  # create, update, delete
    class_name: Mapped[str] = mapped_column(sa.String(64))
    diff: Mapped[str] = mapped_column(LongText)  # unified diff of the bank's YAML


class PartitionFence(Base):
    """The newest fencing token of each scores partition (`storage/fences.py`)."""

    __tablename__ = "partition_fences"
    __table_args__ = (MYSQL_TABLE_ARGS,)

    partition_no: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=False)
    token: Mapped[int] = mapped_column(sa.BigInteger)
    node: Mapped[str] = mapped_column(sa.String(64))
    taken_at: Mapped[datetime]
