"""One score row per camera, class and frame time.

The events service consumes scores from NATS JetStream and acknowledges them once they are
stored; when it is killed between the write and the acknowledgement, the broker delivers
those frames again after a restart. A unique key makes the second write a no-op instead
of a duplicate point in Grafana's series. It replaces the (camera, ts) index, of which it
is a prefix. Duplicates an earlier version may have written are removed first (the oldest
row of each is kept).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The derived table lets MySQL read the table it deletes from.
    op.execute(
        "DELETE FROM scores WHERE id NOT IN (SELECT keep.id FROM "
        "(SELECT MIN(id) AS id FROM scores GROUP BY camera, ts, class_name) AS keep)"
    )
    # The new key first: MySQL needs an index on `camera` for the foreign key at all times.
    op.create_index(
        "uq_scores_camera_ts_class", "scores", ["camera", "ts", "class_name"], unique=True
    )
    op.drop_index("ix_scores_camera_ts", table_name="scores")


def downgrade() -> None:
    op.create_index("ix_scores_camera_ts", "scores", ["camera", "ts"])
    op.drop_index("uq_scores_camera_ts_class", table_name="scores")
