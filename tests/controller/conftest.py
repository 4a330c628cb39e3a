"""Fixtures for controller tests: a real controller (TLS, SQLite file, loopback HTTP) and
clients of it (helpers that are plain functions are in ``labkit.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from labkit import MOCK_POWER

from relaylab import AgentExporter, run_agent_exporter
from tether.controller.testing import ControllerHandle, FakeClock, IssuedIdentity, run_controller


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def ctl(tmp_path: Path, clock: FakeClock) -> Iterator[ControllerHandle]:
    """An in-process controller on a fake clock (time moves only with ``clock.advance``)."""
    with run_controller(tmp_path, clock=clock, heartbeat_interval=1, heartbeat_timeout=5) as c:
        yield c


@pytest.fixture
def alice(ctl: ControllerHandle) -> Iterator[httpx.Client]:
    """The HTTP client of a client identity named alice."""
    with ctl.http(ctl.admin.create_client("alice").token) as http:
        yield http


@pytest.fixture
def bob(ctl: ControllerHandle) -> Iterator[httpx.Client]:
    """The HTTP client of a client identity named bob."""
    with ctl.http(ctl.admin.create_client("bob").token) as http:
        yield http


@pytest.fixture
def root(ctl: ControllerHandle) -> Iterator[httpx.Client]:
    """The HTTP client of an admin identity named root."""
    with ctl.http(ctl.admin.create_admin("root").token) as http:
        yield http


@pytest.fixture
def issued(ctl: ControllerHandle) -> IssuedIdentity:
    """The identity of an exporter named bench-1 with the admin label ``board=rpi4``."""
    return ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})


@pytest.fixture
def bench(issued: IssuedIdentity) -> Iterator[AgentExporter]:
    """bench-1 running (a ``MockPower`` named power) with its agent, on whichever controller
    the module's ``ctl`` is (the relay tests' own has the relay on)."""
    with run_agent_exporter(issued.config + MOCK_POWER) as running:
        yield running
