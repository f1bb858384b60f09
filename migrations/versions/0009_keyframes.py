"""Keyframes for search: each kept frame's CLIP embedding (float16) and thumbnail path.

Issue 26: frames sampled while a camera has motion, and every event's peak, searchable in
words and by example. The vector index is rebuilt from these rows at start.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "keyframes",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("camera", sa.String(64), nullable=False),
        sa.Column("ts", TS, nullable=False),
        sa.Column("event_uuid", sa.String(36), nullable=True),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("thumbnail_path", sa.String(255), nullable=False),
        sa.Column("thumbnail_bytes", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_keyframes"),
        sa.ForeignKeyConstraint(
            ["camera"],
            ["cameras.name"],
            name="fk_keyframes_camera_cameras",
            onupdate="CASCADE",
        ),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("uq_keyframes_camera_ts", "keyframes", ["camera", "ts"], unique=True)
    op.create_index("ix_keyframes_ts", "keyframes", ["ts"])
    op.create_index("ix_keyframes_event_uuid", "keyframes", ["event_uuid"])
    op.create_index("ix_keyframes_thumbnail_path", "keyframes", ["thumbnail_path"])


def downgrade() -> None:
    op.drop_table("keyframes")
