"""Which agent serves an exporter; when a lease's client last polled it, and claimed it.

Revision ID: 0002_harden
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_harden"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("exporters") as batch:
        batch.add_column(sa.Column("agent", sa.String(64), nullable=True))
    with op.batch_alter_table("leases") as batch:
        batch.add_column(sa.Column("polled_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("claimed_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leases") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("polled_at")
    with op.batch_alter_table("exporters") as batch:
        batch.drop_column("agent")
