"""PostgreSQL for the tests and the benches: the server on 127.0.0.1:5432 with trust auth
(started when it is down) and scratch databases with random names, dropped afterwards."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def ensure_postgres_running() -> None:
    """Start the machine's PostgreSQL cluster unless it already answers."""
    try:
        psycopg.connect(ADMIN_DSN, connect_timeout=3).close()
        return
    except psycopg.OperationalError:
        pass
    versions = sorted(Path("/etc/postgresql").iterdir())
    assert versions, "PostgreSQL is not installed (see scripts/setup.sh)"
    pg_ctl = shutil.which("pg_ctlcluster")
    assert pg_ctl is not None
    subprocess.run(
        [pg_ctl, "--skip-systemctl-redirect", versions[-1].name, "main", "start"], check=True
    )
    psycopg.connect(ADMIN_DSN, connect_timeout=10).close()


@contextmanager
def scratch_database(prefix: str = "tether_test") -> Iterator[str]:
    """The URL of a new, empty database named ``<prefix>_<random>``; dropped on exit, even
    with connections still open."""
    ensure_postgres_running()
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
