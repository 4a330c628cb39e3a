"""Fixtures for hostile-load tests: a real controller (TLS, SQLite file, loopback HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.controller.testing import ControllerHandle, FakeClock, run_controller


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ctl(tmp_path: Path, clock: FakeClock) -> Iterator[ControllerHandle]:
    """An in-process controller on a fake clock (time moves only with ``clock.advance``)."""
    with run_controller(tmp_path, clock=clock, heartbeat_interval=1, heartbeat_timeout=5) as c:
        yield c
