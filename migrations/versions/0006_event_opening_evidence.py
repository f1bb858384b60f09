"""What opened each event: the detector's statistic and the threshold it reached.

Thresholds now come from each camera's calibrated noise and a false-alarm budget
(detect/thresholds.py); an operator reviewing an alert sees how far past its threshold
the evidence was. NULL for events stored before.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("opened_statistic", "opened_threshold")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("events") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
