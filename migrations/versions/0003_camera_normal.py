"""Each camera's learned normal, operator verdicts on events, and the peak frame's embedding.

- `camera_states`: one row per camera with its `CameraNormal` as JSON (class bands, the
  adaptive baselines at the last save, normal-reference embeddings), so a restart keeps
  what the camera has learned and a hazard in view at restart still fires.
- `events.verdict` / `verdict_note` / `verdict_at`: operator feedback (false_alarm,
  confirmed).
- `events.peak_embedding`: the peak frame's CLIP image embedding (float16, base64), which
  a false-alarm verdict adds to the camera's normal references.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LongText = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")
Stamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql")


def upgrade() -> None:
    op.create_table(
        "camera_states",
        sa.Column("camera", sa.String(64), primary_key=True),
        sa.Column("state", LongText, nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("references", sa.Integer(), nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("camera", name="pk_camera_states"),
        mysql_engine="InnoDB",
        mysql_charset="utf8mb4",
    )
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("verdict", sa.String(16), nullable=True))
        batch.add_column(sa.Column("verdict_note", sa.String(1000), nullable=True))
        batch.add_column(sa.Column("verdict_at", Stamp, nullable=True))
        batch.add_column(sa.Column("peak_embedding", sa.Text(), nullable=True))
        batch.create_check_constraint(
            "ck_events_verdict", "verdict IS NULL OR verdict IN ('false_alarm', 'confirmed')"
        )


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint("ck_events_verdict", type_="check")
        batch.drop_column("peak_embedding")
        batch.drop_column("verdict_at")
        batch.drop_column("verdict_note")
        batch.drop_column("verdict")
    op.drop_table("camera_states")
