"""The agent survives a controller restart: it notices, re-registers with back-off, and serves
the leases granted afterwards (the controller runs as a child process here)."""

from __future__ import annotations

from pathlib import Path

import tether
from tether.controller._relay_testing import run_agent_exporter
from tether.controller.testing import run_controller

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
