"""Initial schema: identities, policies, leases, lease grants.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    lab_state = op.create_table(
        "lab_state",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("exporters_version", sa.Integer, nullable=False),
        sa.Column("identities_version", sa.Integer, nullable=False),
    )
    op.bulk_insert(lab_state, [{"id": 1, "exporters_version": 0, "identities_version": 0}])
    op.create_table(
        "clients",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("token_hash", sa.String(80), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "exporters",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("token_hash", sa.String(80), nullable=False, unique=True),
        sa.Column("admin_labels", sa.JSON, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("report", sa.JSON, nullable=True),
        sa.Column("hook", sa.Boolean, nullable=False, server_default=sa.text("false")),
        sa.Column("last_seen", sa.Float, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "policies",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("clients", sa.JSON, nullable=False),
        sa.Column("selector", sa.Text, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("max_duration", sa.Float, nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("client", sa.String(200), nullable=False, index=True),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("requests", sa.JSON, nullable=False),
        sa.Column("allowed", sa.JSON, nullable=True),
        sa.Column("duration", sa.Float, nullable=False),
        sa.Column("max_duration", sa.Float, nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("granted_at", sa.Float, nullable=True),
        sa.Column("ends_at", sa.Float, nullable=True),
        sa.Column("ended_at", sa.Float, nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_table(
        "lease_exporters",
        sa.Column("lease_seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("exporter", sa.String(200), nullable=False, index=True),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_index(
        "one_active_lease_per_exporter",
        "lease_exporters",
        ["exporter"],
        unique=True,
        sqlite_where=sa.text("active"),
        postgresql_where=sa.text("active"),
    )


def downgrade() -> None:
    for table in ("lease_exporters", "leases", "policies", "exporters", "clients", "lab_state"):
        op.drop_table(table)
