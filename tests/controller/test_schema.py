"""The migrations build exactly the tables the code uses; the package's public names exist."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select, text

import tether.controller
import tether.controller.testing
from tether.controller import Database
from tether.controller._tables import lease_exporters, metadata
from tether.errors import ConfigError


def test_migrations_match_the_table_definitions(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'c.db'}")
    database.migrate()
    database.migrate()  # idempotent
    with database.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    database.dispose()
    assert diff == []


def test_the_database_refuses_two_active_grants_of_one_exporter(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'c.db'}")
    database.migrate()
    row = {"slot": 0, "exporter": "e1", "active": True}
    with database.begin("grant") as conn:
        conn.execute(insert(lease_exporters).values(lease_seq=1, **row))
    with pytest.raises(tether.errors.ControllerError) as info, database.begin("grant") as conn:
        conn.execute(insert(lease_exporters).values(lease_seq=2, **row))
    assert (info.value.code, info.value.status) == ("conflict", 409)
    with database.begin("ended grants may repeat") as conn:
        conn.execute(text("UPDATE lease_exporters SET active = false"))
        conn.execute(insert(lease_exporters).values(lease_seq=2, **row))
        count = conn.execute(select(lease_exporters.c.exporter)).all()
    database.dispose()
    assert len(count) == 2


@pytest.mark.parametrize(
    "url", ["mysql://x/y", "sqlite://", "sqlite:///:memory:", "not a url at all"]
)
def test_bad_database_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        Database(url)
    assert "sqlite:///" in str(info.value)


def test_public_names() -> None:
    for module in (tether.controller, tether.controller.testing):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
    for name in ("Controller", "Admin", "parse_selector", "serve", "create_app"):
        assert name in tether.controller.__all__
    assert "run_controller" in tether.controller.testing.__all__
