"""The weather at each event: conditions at the camera's location when the event started.

Seed 003 logs the local weather report with each detection, so operators can see why
accidents cluster (rain, fog, ice). The columns stay NULL for cameras without a location
and for events whose weather never arrived (outputs/weather.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Stamp = sa.DateTime().with_variant(mysql.DATETIME(fsp=3), "mysql")
COLUMNS = (
    ("weather_code", sa.SmallInteger()),
    ("weather_text", sa.String(64)),
    ("weather_temperature_c", sa.Double()),
    ("weather_precipitation_mm", sa.Double()),
    ("weather_wind_speed_kmh", sa.Double()),
    ("weather_visibility_m", sa.Double()),
    ("weather_observed_at", Stamp),
)


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        for name, type_ in COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
