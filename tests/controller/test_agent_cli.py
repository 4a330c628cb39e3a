"""``tether exporter serve CONFIG`` with a ``controller:`` section runs the agent: a real exporter
process with no listener at all, leased and driven through the relay."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tether.controller.testing import ControllerHandle, run_controller

EXPORT = """
export:
  power: {type: tether.drivers.power.MockPower}
"""


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[ControllerHandle]:
    with run_controller(tmp_path, relay=True) as ctl:
        yield ctl


def test_exporter_serve_registers_and_serves_leases_outbound_only(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
    config = tmp_path / "bench.yaml"
    config.write_text(issued.config + EXPORT)
    process = subprocess.Popen(
        [sys.executable, "-c", "from tether.cli import main; main()", "exporter", "serve", config],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"  # no listener: nothing before it
        alice = ctl.admin.create_client("alice")
        # The lease waits in the queue until the agent registered, then is served.
        account = {"controller": ctl.url, "token": alice.token, "ca": ctl.ca}
        with tether.lease("board=rpi4", "1m", **account) as dut:  # type: ignore[arg-type]
            dut.power.on()
            assert dut.power.status() is True
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "registered with" in stderr and "session" in stderr


def test_a_rejected_exporter_token_ends_the_exporter_with_a_clear_error(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
    config = tmp_path / "bench.yaml"
    config.write_text(issued.config.replace("token: tth_", "token: tth_x") + EXPORT)
    done = subprocess.run(
        [sys.executable, "-c", "from tether.cli import main; main()", "exporter", "serve", config],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "error: the controller rejected the exporter's token" in done.stderr
    assert "unknown or revoked token" in done.stderr
