"""The controller's tables (SQLAlchemy Core). The alembic migrations in ``migrations/`` create
them; a test checks the migrations and these definitions agree.

Times are float seconds since the epoch (UTC). Names, not foreign keys, link leases to clients
and exporters, so deleting an identity never rewrites history: it ends the identity's live
leases first. ``lease_exporters`` has a partial unique index on the exporter over active rows:
whatever the application does, the database refuses to grant one exporter twice.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

__all__ = [
    "admins",
    "audit",
    "clients",
    "exporters",
    "lab_state",
    "lease_exporters",
    "leases",
    "metadata",
    "policies",
]

metadata = MetaData()

#: One row (id=1): ``exporters_version`` changes whenever an exporter's labels change,
#: ``identities_version`` whenever an identity is made, rotated or deleted (controllers then drop
#: their token and lease caches). The grant transaction locks this row (``SELECT ... FOR UPDATE``
#: on PostgreSQL) so replicas take turns.
lab_state = Table(
    "lab_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("exporters_version", Integer, nullable=False),
    Column("identities_version", Integer, nullable=False),
)

clients = Table(
    "clients",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("token_hash", String(80), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

exporters = Table(
    "exporters",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("token_hash", String(80), nullable=False, unique=True),
    Column("admin_labels", JSON, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("report", JSON, nullable=True),
    Column("hook", Boolean, nullable=False, server_default=text("false")),
    Column("last_seen", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    # The agent process (a random id it sends) that registered last: one agent an exporter.
    Column("agent", String(64), nullable=True),
    # Why an admin took it out of the pool (None: in the pool), and the last failed health
    # check's output (None: healthy). Either keeps it from being granted.
    Column("maintenance", Text, nullable=True),
    Column("unhealthy", Text, nullable=True),
)

#: People who run the lab from the dashboard (``tether admin create-admin``); they cannot lease.
admins = Table(
    "admins",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("token_hash", String(80), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
)

policies = Table(
    "policies",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("clients", JSON, nullable=False),
    Column("selector", Text, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("max_duration", Float, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("client", String(200), nullable=False, index=True),
    Column("state", String(20), nullable=False, index=True),
    Column("requests", JSON, nullable=False),
    Column("allowed", JSON, nullable=True),
    Column("duration", Float, nullable=False),
    Column("max_duration", Float, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("granted_at", Float, nullable=True),
    Column("ends_at", Float, nullable=True),
    Column("ended_at", Float, nullable=True),
    Column("reason", Text, nullable=True),
    # When the client last polled a pending request (a request nobody polls lapses), and
    # first saw it granted (a grant nobody claims is released).
    Column("polled_at", Float, nullable=True),
    Column("claimed_at", Float, nullable=True),
    # The exporter's hooks for this lease: [{hook, state, output, started_at, ...}].
    Column("hooks", JSON, nullable=True),
)

lease_exporters = Table(
    "lease_exporters",
    metadata,
    Column("lease_seq", Integer, primary_key=True, autoincrement=False),
    Column("slot", Integer, primary_key=True, autoincrement=False),
    Column("exporter", String(200), nullable=False, index=True),
    Column("active", Boolean, nullable=False),
    Index(
        "one_active_lease_per_exporter",
        "exporter",
        unique=True,
        sqlite_where=text("active"),
        postgresql_where=text("active"),
    ),
)

#: Who did what, when, from where: grants, releases, expiries, extensions, maintenance,
#: identity and policy changes, failed authentications. Kept for ``audit_retention`` seconds.
audit = Table(
    "audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("actor", String(200), nullable=False),
    Column("action", String(40), nullable=False, index=True),
    Column("target", String(200), nullable=False, index=True),
    Column("address", String(100), nullable=True),
    Column("details", JSON, nullable=True),
)
