"""The agent survives a controller restart: it notices, re-registers with back-off, and serves
the leases granted afterwards; a session in use resumes after the restart (the controller runs
as a child process here)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tether
from relaylab import run_agent_exporter
from tether.controller.testing import run_controller
from tether.errors import ConnectionLost

EXPORT = """
export:
  power: {type: tether.drivers.power.MockPower}
"""


def test_the_agent_reconnects_after_a_controller_restart(tmp_path: Path) -> None:
    with run_controller(tmp_path, subprocess=True, relay=True) as ctl:
        issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
        alice = ctl.admin.create_client("alice")
        account = {"controller": ctl.url, "token": alice.token, "ca": ctl.ca}
        with run_agent_exporter(issued.config + EXPORT) as running:
            with tether.lease("board=rpi4", "1m", **account) as dut:  # type: ignore[arg-type]
                dut.power.on()
            first = running.agent.name
            ctl.restart()
            # Granted once the agent is back (its next heartbeat or long-poll reconnects).
            with tether.lease("board=rpi4", "1m", **account) as dut:  # type: ignore[arg-type]
                assert dut.power.status() is False  # a fresh session
            assert running.agent.name == first == "bench-1"


def test_a_session_in_use_resumes_after_a_controller_restart(tmp_path: Path) -> None:
    with run_controller(tmp_path, subprocess=True, relay=True) as ctl:
        issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
        alice = ctl.admin.create_client("alice")
        account = {"controller": ctl.url, "token": alice.token, "ca": ctl.ca}
        with run_agent_exporter(issued.config + EXPORT):
            with tether.lease("board=rpi4", "5m", **account) as dut:  # type: ignore[arg-type]
                dut.power.on()
                relay = ctl.relay
                ctl.restart()  # the relay went down with it: the connection is cut
                assert ctl.relay == relay
                try:
                    status = dut.power.status()
                except ConnectionLost as exc:  # the cut noticed first: a clear error...
                    assert "lost" in str(exc)
                    status = dut.power.status()  # ...and the next call reconnects
                # The same session, driver state and all, through the restarted relay.
                assert status is True
            with pytest.raises(ConnectionLost):
                dut.power.status()  # released at exit: the session is gone
