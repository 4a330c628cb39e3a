"""Smaller hardening: strict durations, a private database file, limits from the command line."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tether.controller import Database, Limits
from tether.controller.testing import ControllerHandle
from tether.errors import ConfigError


@pytest.mark.parametrize(
    "duration", [True, False, "1h1h1h", 0.0001, "0.0005", None, [60], {"s": 1}, "9" * 80]
)
def test_odd_durations_are_422_and_nothing_is_granted(
    ctl: ControllerHandle, duration: object
) -> None:
    alice = ctl.admin.create_client("alice")
    ctl.admin.create_exporter("e1", {})
    with ctl.http(alice.token) as http:
        answer = http.post("/v1/leases", json={"exporter": "e1", "duration": duration})
        assert answer.status_code == 422, answer.text
        assert http.get("/v1/leases").json()["leases"] == []


def test_the_sqlite_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "controller.db"
    database = Database(f"sqlite:///{path}")
    database.migrate()
    database.dispose()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_limits_parse_from_key_value_and_refuse_nonsense() -> None:
    limits = Limits.parse(["max_pending_per_client=5", "header-timeout=2.5"])
    assert limits.max_pending_per_client == 5 and limits.header_timeout == 2.5
    for bad in (["nosuch=1"], ["max_body"], ["max_body=-1"], ["max_body=big"]):
        with pytest.raises(ConfigError):
            Limits.parse(bad)
