"""Versions of the prompt bank edited through the API (/api/v1/classes).

Issue 26: hazards in words, live. Each change stores the whole bank (YAML), who made it,
when, and a diff; the newest version is the live bank and wins over the bank file.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql")
LONG_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")


def upgrade() -> None:
    op.create_table(
        "prompt_banks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("text", LONG_TEXT, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("diff", LONG_TEXT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_prompt_banks"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    op.create_index("ix_prompt_banks_version", "prompt_banks", ["version"])


def downgrade() -> None:
    op.drop_table("prompt_banks")
