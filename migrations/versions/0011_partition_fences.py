"""Fencing tokens of the scores' partitions, drawn and checked by the database.

Issue 27: an events instance paused past its lease must not write behind the instance
that took its partition over. The instance that takes a partition draws its next token
here; each event and camera-state write of that partition's cameras checks it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql")


def upgrade() -> None:
    op.create_table(
        "partition_fences",
        sa.Column("partition_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("taken_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("partition_no", name="pk_partition_fences"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )


def downgrade() -> None:
    op.drop_table("partition_fences")
