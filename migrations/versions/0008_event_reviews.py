"""Which events each user of the review page has opened (reviewed, per user).

The review page marks an event reviewed for the user who opens it and counts, per camera,
what that user has not reviewed yet.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql")


def upgrade() -> None:
    op.create_table(
        "event_reviews",
        sa.Column("reviewer", sa.String(64), nullable=False),
        sa.Column("event_uuid", sa.String(36), nullable=False),
        sa.Column("reviewed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("reviewer", "event_uuid", name="pk_event_reviews"),
        sa.ForeignKeyConstraint(
            ["event_uuid"],
            ["events.uuid"],
            name="fk_event_reviews_event_uuid_events",
            ondelete="CASCADE",
        ),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_event_reviews_event_uuid", "event_reviews", ["event_uuid"])


def downgrade() -> None:
    op.drop_table("event_reviews")  # its index with it (MySQL's foreign key needs it till then)
