"""Database engines, migrations and transactions for SQLite and PostgreSQL.

* ``sqlite:///path`` (the default): WAL journal, ``synchronous=NORMAL`` (a commit does not wait
  for fsync; a power cut may lose the last second, never corrupt), and every transaction starts
  with ``BEGIN IMMEDIATE`` so a writer never fails half-way on a lock upgrade. Admin commands may
  run against the same file while the controller serves; they wait on the lock (30 s).
* ``postgresql://...``: psycopg 3. Write transactions that touch leases first lock the single
  ``lab_state`` row (``SELECT ... FOR UPDATE``), so grant decisions of all replicas are
  serialised; the partial unique index on active grants is the second line of defence.

Migrations (alembic, in this package) run at start; an advisory lock on PostgreSQL keeps two
replicas starting together from migrating at once. SQLAlchemy errors are mapped to
:class:`~tether.errors.ControllerError` in one place, :func:`map_db_errors`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError

from tether.errors import ConfigError, ControllerError

from ._tables import lab_state

__all__ = ["Database", "default_database_url", "map_db_errors"]

_MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_LOCK = 0x7E7E_C0DE


def default_database_url() -> str:
    """``sqlite:///`` on ``$XDG_STATE_HOME/tether/controller.db`` (``~/.local/state/...``)."""
    import os

    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite:///{Path(base) / 'tether' / 'controller.db'}"


@contextlib.contextmanager
def map_db_errors(what: str) -> Iterator[None]:
    """Turn SQLAlchemy errors raised while doing ``what`` into :class:`ControllerError`."""
    try:
        yield
    except IntegrityError as exc:
        raise ControllerError(
            f"{what}: conflicts with existing data ({exc.orig})", code="conflict", status=409
        ) from exc
    except OperationalError as exc:
        raise ControllerError(
            f"{what}: database unavailable ({exc.orig})", code="database_error", status=503
        ) from exc
    except SQLAlchemyError as exc:
        raise ControllerError(f"{what}: {exc}", code="database_error", status=500) from exc


class Database:
    """An engine plus the transaction discipline described in the module docstring.

    Args:
        url: ``sqlite:///path`` or ``postgresql://user@host/db`` (the psycopg driver is used).

    Raises:
        ConfigError: the URL is not one of those.
    """

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigError(
                f"bad database URL {url!r}: expected sqlite:///path or postgresql://..."
            ) from exc
        backend = parsed.get_backend_name()
        if backend == "sqlite":
            if parsed.database in (None, "", ":memory:"):
                raise ConfigError(
                    f"bad database URL {url!r}: SQLite needs a file path (sqlite:///path/to.db)"
                )
            _create_private(Path(parsed.database).expanduser())
            self.engine: Engine = create_engine(
                parsed.set(drivername="sqlite+pysqlite"),
                connect_args={"check_same_thread": False, "timeout": 30},
            )
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
            # Readers on their own connections, in deferred transactions: WAL lets them read
            # while a writer writes, and they never take (or wait for) the write lock.
            self.read_engine: Engine = create_engine(
                parsed.set(drivername="sqlite+pysqlite"),
                connect_args={"check_same_thread": False, "timeout": 30},
            )
            event.listen(self.read_engine, "connect", _sqlite_connect)
            event.listen(self.read_engine, "begin", _sqlite_begin_deferred)
        elif backend == "postgresql":
            self.engine = create_engine(
                parsed.set(drivername="postgresql+psycopg"),
                pool_size=10,
                max_overflow=10,
                pool_pre_ping=True,
            )
            self.read_engine = self.engine
        else:
            raise ConfigError(
                f"bad database URL {url!r}: expected sqlite:///path or postgresql://..."
            )
        self.url = url
        self.is_sqlite = backend == "sqlite"

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with map_db_errors("migrating the database"), self.engine.connect() as connection:
            if not self.is_sqlite:
                connection.exec_driver_sql(f"SELECT pg_advisory_lock({_MIGRATION_LOCK})")
                connection.commit()
            try:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                connection.commit()
            finally:
                if not self.is_sqlite:
                    connection.exec_driver_sql(f"SELECT pg_advisory_unlock({_MIGRATION_LOCK})")
                    connection.commit()

    @contextlib.contextmanager
    def begin(self, what: str, *, lock: bool = False) -> Iterator[Connection]:
        """A transaction; ``lock`` takes the lab lock first (needed before deciding grants)."""
        with map_db_errors(what), self.engine.begin() as connection:
            if lock and not self.is_sqlite:
                connection.execute(select(lab_state.c.id).with_for_update())
            yield connection

    @contextlib.contextmanager
    def read(self, what: str) -> Iterator[Connection]:
        """A read-only transaction that never waits for the write lock."""
        with map_db_errors(what), self.read_engine.begin() as connection:
            yield connection

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
        if self.read_engine is not self.engine:
            self.read_engine.dispose()


def _create_private(path: Path) -> None:
    """Make the database file (and a missing directory) readable by its owner only: it holds
    token hashes and the lab's history. An existing file keeps its mode."""
    import os

    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE instead of pysqlite's deferred BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_begin_deferred(connection: Connection) -> None:
    connection.exec_driver_sql("BEGIN")
