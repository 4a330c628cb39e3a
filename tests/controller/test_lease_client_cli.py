"""``tether lease acquire|list|extend|release`` and ``tether exporters`` against a real controller
and a real exporter with its agent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from labkit import tether_process

from relaylab import AgentExporter, run_agent_exporter
from tether.cli import main
from tether.controller.testing import ControllerHandle, run_controller

EXPORT = """
export:
  power: {type: tether.drivers.power.MockPower}
"""


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[ControllerHandle]:
    with run_controller(tmp_path, relay=True) as ctl:
        yield ctl


@pytest.fixture
def bench(ctl: ControllerHandle) -> Iterator[AgentExporter]:
    issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4", "site": "lab-a"})
    with run_agent_exporter(issued.config + EXPORT) as running:
        yield running


@pytest.fixture
def tether_cli(
    ctl: ControllerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[object]:
    """Runs `tether ...` as alice, whose client config file is in TETHER_CONFIG."""
    config = tmp_path / "alice.yaml"
    config.write_text(ctl.admin.create_client("alice").config)
    for name in ("TETHER_CONTROLLER", "TETHER_TOKEN", "TETHER_CA"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner(env={"TETHER_CONFIG": str(config), "COLUMNS": "200"})

    def run(*args: str) -> Result:
        return runner.invoke(main, list(args), catch_exceptions=False)

    yield run


def test_exporters_lists_status_and_labels(bench: AgentExporter, tether_cli: object) -> None:
    result = tether_cli("exporters")  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    assert [row[:3] for row in rows(result.output)] == [
        ["bench-1", "board=rpi4,site=lab-a", "available"]
    ]
    result = tether_cli("exporters", "--selector", "board=bbb")  # type: ignore[operator]
    assert "bench-1" not in result.output


def rows(output: str) -> list[list[str]]:
    """The body rows of a listing (off a terminal: tab-separated under a header line)."""
    lines = [line for line in output.splitlines() if "\t" in line]
    return [line.split("\t") for line in lines[1:]]


def test_acquire_list_extend_release(bench: AgentExporter, tether_cli: object) -> None:
    run = tether_cli
    result = run("lease", "acquire", "--selector", "board=rpi4", "--duration", "1m")  # type: ignore[operator]
    assert result.exit_code == 0, result.output
    [[lease, state, exporters, _queue, ends_at, _reason]] = rows(result.output)
    assert (state, exporters) == ("ready", "bench-1") and ends_at.startswith("20")

    assert [row[:3] for row in rows(run("lease", "list").output)] == [[lease, "ready", "bench-1"]]  # type: ignore[operator]
    assert rows(run("exporters").output)[0][2] == "leased"  # type: ignore[operator]

    extended = run("lease", "extend", lease, "10m")  # type: ignore[operator]
    assert extended.exit_code == 0 and f"lease {lease}: ends at 20" in extended.output

    released = run("lease", "release", lease)  # type: ignore[operator]
    assert released.output.strip() == f"lease {lease}: ended"
    assert rows(run("lease", "list").output) == []  # type: ignore[operator]
    assert [row[:2] for row in rows(run("lease", "list", "--all").output)] == [[lease, "ended"]]  # type: ignore[operator]


def test_bad_input_is_explained(bench: AgentExporter, tether_cli: object) -> None:
    result = tether_cli("lease", "acquire")  # type: ignore[operator]
    assert result.exit_code == 2 and "exactly one of --selector and --exporter" in result.output
    result = tether_cli("lease", "acquire", "-s", "board==x")  # type: ignore[operator]
    assert result.exit_code == 1 and "bad_selector" not in result.output
    assert "selector" in result.output
    result = tether_cli("lease", "release", "nosuch")  # type: ignore[operator]
    assert result.exit_code == 1 and "no lease 'nosuch'" in result.output
    result = tether_cli("exporters", "--token", "tth_wrong")  # type: ignore[operator]
    assert result.exit_code == 1 and "unknown or revoked token" in result.output


def test_ctrl_c_while_queued_withdraws_the_request(
    ctl: ControllerHandle, bench: AgentExporter, tmp_path: Path
) -> None:
    bob = ctl.admin.create_client("bob")
    config = tmp_path / "bob.yaml"
    config.write_text(bob.config)
    with ctl.http(ctl.admin.create_client("carol").token) as carol:  # carol holds bench-1
        taken = carol.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60})
        assert taken.json()["state"] == "ready"
        command = ["lease", "acquire", "-s", "board=rpi4", "--config", str(config)]
        process = tether_process(*command)
        assert process.stderr is not None
        waiting = process.stderr.readline()
        assert "waiting for lease" in waiting and "position 1" in waiting
        lease_id = waiting.split()[3].rstrip(":")
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
        assert f"lease {lease_id} withdrawn from the queue" in stderr
    with ctl.http(bob.token) as http:
        assert http.get(f"/v1/leases/{lease_id}").json()["state"] == "ended"


def test_ctrl_c_twice_at_once_still_withdraws_the_request(
    ctl: ControllerHandle, bench: AgentExporter, tmp_path: Path
) -> None:
    bob = ctl.admin.create_client("bob")
    config = tmp_path / "bob.yaml"
    config.write_text(bob.config)
    with ctl.http(ctl.admin.create_client("carol").token) as carol:  # carol holds bench-1
        taken = carol.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60})
        assert taken.json()["state"] == "ready"
        command = ["lease", "acquire", "-s", "board=rpi4", "--config", str(config)]
        process = tether_process(*command)
        assert process.stderr is not None
        waiting = process.stderr.readline()
        assert "waiting for lease" in waiting
        lease_id = waiting.split()[3].rstrip(":")
        process.send_signal(signal.SIGINT)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, stderr
    with ctl.http(bob.token) as http:
        assert http.get(f"/v1/leases/{lease_id}").json()["state"] == "ended"


def test_shell_with_a_selector_leases_and_dut_drives_the_leased_exporter(
    bench: AgentExporter, ctl: ControllerHandle, tmp_path: Path
) -> None:
    config = tmp_path / "bob.yaml"
    config.write_text(ctl.admin.create_client("bob").config)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["TETHER_CONFIG"] = str(config)
    tether = Path(sys.executable).parent / "tether"
    script = "dut power on && dut power status && echo inside=$TETHER_SHELL"
    done = subprocess.run(
        [str(tether), "shell", "--selector", "board=rpi4", "--duration", "5m", "--", "sh", "-c", script],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "True" in done.stdout or "true" in done.stdout
    assert "inside=bench-1" in done.stdout
    assert "leased bench-1" in done.stderr
    runner = CliRunner(env={"TETHER_CONFIG": str(config), "COLUMNS": "200"})
    assert rows(runner.invoke(main, ["lease", "list"]).output) == []  # released at exit
    [[_lease, state, exporters, *_]] = rows(runner.invoke(main, ["lease", "list", "--all"]).output)
    assert (state, exporters) == ("ended", "bench-1")
