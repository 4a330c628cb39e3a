"""A session's lifecycle is one table (``SESSION_TRANSITIONS``): a direct session goes IDLE when
its last connection leaves and closes after the grace period unless one comes back; a lease
session stays OPEN without connections; an illegal move names kind, state and event. Real
exporter, real unix sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import tether
from tether.errors import LifecycleError
from tether.exporter import (
    SESSION_TRANSITIONS,
    Session,
    SessionEvent,
    SessionKind,
    SessionState,
    parse_config,
    run_exporter_in_thread,
)

CONFIG = "name: lab\nexport:\n  power: {type: tether.drivers.power.MockPower}\n"


def test_the_table_ends_every_live_state_and_only_direct_sessions_go_idle() -> None:
    for kind in SessionKind:
        for state in (SessionState.OPENING, SessionState.OPEN, SessionState.IDLE):
            assert SESSION_TRANSITIONS[(kind, state, SessionEvent.END)] is SessionState.ENDING
        assert (kind, SessionState.CLOSED, SessionEvent.ATTACH) not in SESSION_TRANSITIONS
    assert (
        SESSION_TRANSITIONS[(SessionKind.DIRECT, SessionState.OPEN, SessionEvent.DETACH_LAST)]
        is SessionState.IDLE
    )
    assert (
        SESSION_TRANSITIONS[(SessionKind.LEASE, SessionState.OPEN, SessionEvent.DETACH_LAST)]
        is SessionState.OPEN
    )


def test_direct_sessions_idle_and_close_lease_sessions_wait(tmp_path: Path) -> None:
    config = parse_config(CONFIG + "session_grace: 0.2\n", tmp_path / "lab.yaml")
    with run_exporter_in_thread(config) as running:
        exporter = running.exporter
        with tether.connect(running.url) as dut:
            dut.power.on()

            async def states() -> list[tuple[str, SessionState]]:
                return [(s.id, s.state) for s in exporter.sessions.values()]

            [(found, state)] = running.loop_thread.run(states())
            assert state is SessionState.OPEN
            session = exporter.sessions[found]
        # The connection left: IDLE, then (grace 0.2 s) closed; waited on, not slept.
        running.loop_thread.run(asyncio.wait_for(session.closed.wait(), 30))
        assert session.state is SessionState.CLOSED and found not in exporter.sessions

        async def lease_session() -> Session:
            return await exporter.open_session("L1")

        leased = running.loop_thread.run(lease_session())
        assert leased.kind is SessionKind.LEASE and leased.state is SessionState.OPEN
        running.loop_thread.run(exporter.close_session(leased.id))
        assert leased.state is SessionState.CLOSED

        with pytest.raises(
            LifecycleError,
            match=r"session \S+ \(lease\): cannot attach a connection in state CLOSED",
        ):
            leased.attach(None)  # type: ignore[arg-type]
