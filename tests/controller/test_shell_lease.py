"""``tether shell --lease ID`` (a real shell process): it reuses a lease you hold and leaves it
held; inside the shell a warning comes before the lease expires, and "the lease expired at
T" once it has (not a relay error)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaylab import AgentExporter, acquire_lease, release_fifo
from tether.controller.testing import ControllerHandle, FakeClock, run_controller


@pytest.fixture
def ctl(tmp_path: Path, clock: FakeClock) -> Iterator[ControllerHandle]:
    """The relay on; heartbeats never lapse, so only ``clock.advance`` ends a lease."""
    with run_controller(tmp_path, relay=True, clock=clock, heartbeat_timeout=3600) as ctl:
        yield ctl


def shell(config: Path, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["TETHER_CONFIG"] = str(config)
    argv = [sys.executable, "-c", "from tether.cli import main; main()", "shell", *args]
    return subprocess.Popen(argv, env=env, text=True, **kwargs)  # type: ignore[call-overload]


def test_shell_lease_reuses_a_held_lease_and_leaves_it_held(
    ctl: ControllerHandle, bench: AgentExporter, tmp_path: Path
) -> None:
    alice = ctl.admin.create_client("alice")
    config = tmp_path / "alice.yaml"
    config.write_text(alice.config)
    lease_id = acquire_lease(ctl, alice.token)
    process = shell(config, "--lease", lease_id, "--", "dut", "power", "on", stderr=subprocess.PIPE)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert f"using bench-1 (lease {lease_id})" in stderr
    with ctl.http(alice.token) as http:
        assert http.get(f"/v1/leases/{lease_id}").json()["state"] == "ready"
    # Someone else's lease id is refused clearly.
    bob = ctl.admin.create_client("bob")
    config.write_text(bob.config)
    refused = shell(config, "--lease", lease_id, "--", "true", stderr=subprocess.PIPE)
    _, stderr = refused.communicate(timeout=60)
    assert refused.returncode != 0
    assert lease_id in stderr and "Traceback" not in stderr


def test_shell_warns_before_the_lease_expires_and_says_when_it_expired(
    ctl: ControllerHandle, bench: AgentExporter, clock: FakeClock, tmp_path: Path
) -> None:
    alice = ctl.admin.create_client("alice")
    config = tmp_path / "alice.yaml"
    config.write_text(alice.config)
    lease_id = acquire_lease(ctl, alice.token)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    process = shell(
        config,
        "--lease",
        lease_id,
        "--expiry-warning",
        "5",
        "--",
        "sh",
        "-c",
        f"read x < {gate}",
        stderr=subprocess.PIPE,
    )
    guard = threading.Timer(60, process.kill)  # a safety net, never the pass condition
    guard.start()
    lines: list[str] = []

    def wait_for(text: str) -> str:
        assert process.stderr is not None
        while line := process.stderr.readline():
            lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"the shell ended without saying {text!r}: {lines}")

    try:
        # 120 s left, warning at 5 min: at once.
        warning = wait_for("expires at")
        assert f"lease {lease_id} expires at" in warning
        assert f"tether lease extend {lease_id}" in warning
        clock.advance(180)
        ctl.upkeep_now()
        expired = wait_for("expired at")
        assert f"tether shell: the lease {lease_id} expired at" in expired
    finally:
        release_fifo(gate, "go\n")
        process.communicate(timeout=30)
        guard.cancel()
    assert process.returncode == 0, lines
    assert not any("relay" in line.lower() and "error" in line.lower() for line in lines), lines
