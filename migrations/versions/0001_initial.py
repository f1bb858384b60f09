"""Initial schema: cameras, events, scores.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the model types: a migration must not change when the models do.
TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def upgrade() -> None:
    op.create_table(
        "cameras",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("source_kind", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_seen_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_cameras"),
        sa.UniqueConstraint("name", name="uq_cameras_name"),
        **MYSQL,
    )
    op.create_table(
        "events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("camera", sa.String(64), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.Column("peak_at", TS, nullable=False),
        sa.Column("peak_score", sa.Double(), nullable=False),
        sa.Column("mean_score", sa.Double(), nullable=False),
        sa.Column("snapshot_path", sa.String(512), nullable=True),
        sa.Column("clip_path", sa.String(512), nullable=True),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("prompt_bank_version", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.UniqueConstraint("uuid", name="uq_events_uuid"),
        sa.ForeignKeyConstraint(
            ["camera"], ["cameras.name"], name="fk_events_camera_cameras", onupdate="CASCADE"
        ),
        sa.CheckConstraint("status IN ('open', 'closed', 'interrupted')", name="ck_events_status"),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'critical')", name="ck_events_severity"
        ),
        **MYSQL,
    )
    op.create_index("ix_events_started_at", "events", ["started_at"])
    op.create_index("ix_events_camera_started_at", "events", ["camera", "started_at"])
    op.create_index("ix_events_class_name_started_at", "events", ["class_name", "started_at"])
    op.create_index("ix_events_status", "events", ["status"])
    op.create_table(
        "scores",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("camera", sa.String(64), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("score", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scores"),
        sa.ForeignKeyConstraint(
            ["camera"], ["cameras.name"], name="fk_scores_camera_cameras", onupdate="CASCADE"
        ),
        **MYSQL,
    )
    op.create_index("ix_scores_ts", "scores", ["ts"])
    op.create_index("ix_scores_camera_ts", "scores", ["camera", "ts"])
    op.create_index("ix_scores_class_name_ts", "scores", ["class_name", "ts"])


def downgrade() -> None:
    op.drop_table("scores")
    op.drop_table("events")
    op.drop_table("cameras")
