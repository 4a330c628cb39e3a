"""Operations: admin identities, exporter maintenance and health, the audit log.

Revision ID: 0003
Revises: 0002_harden
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002_harden"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admins",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("token_hash", sa.String(80), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    with op.batch_alter_table("exporters") as batch:
        batch.add_column(sa.Column("maintenance", sa.Text, nullable=True))
        batch.add_column(sa.Column("unhealthy", sa.Text, nullable=True))
    op.create_table(
        "audit",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.Float, nullable=False, index=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(40), nullable=False, index=True),
        sa.Column("target", sa.String(200), nullable=False, index=True),
        sa.Column("address", sa.String(100), nullable=True),
        sa.Column("details", sa.JSON, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit")
    with op.batch_alter_table("exporters") as batch:
        batch.drop_column("unhealthy")
        batch.drop_column("maintenance")
    op.drop_table("admins")
