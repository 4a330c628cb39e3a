"""The exporter's ``health:`` check against a real controller: a real ``tether exporter serve``
process whose failing check takes it out of the pool and whose passing one brings it back."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether.controller.testing import ControllerHandle, run_controller

EXPORT = """
export:
  power: {type: tether.drivers.power.MockPower}
"""


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[ControllerHandle]:
    with run_controller(tmp_path, relay=True) as ctl:
        yield ctl


class Serving:
    """``tether exporter serve CONFIG`` with its stderr read line by line."""

    def __init__(self, config: Path) -> None:
        argv = [sys.executable, "-c", "from tether.cli import main; main()", "exporter", "serve"]
        self.process = subprocess.Popen(
            [*argv, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # A safety net: a test that waits for a line that never comes ends, not hangs.
        self.guard = threading.Timer(60, self.process.kill)
        self.guard.start()
        self.lines: list[str] = []

    def wait_for(self, text: str, after: int = 0) -> str:
        """The next stderr line (from line ``after`` on) containing ``text``."""
        assert self.process.stderr is not None
        for line in self.lines[after:]:
            if text in line:
                return line
        while line := self.process.stderr.readline():
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"the exporter exited without logging {text!r}:\n{self.lines}")

    def stop(self) -> str:
        self.process.send_signal(signal.SIGTERM)
        _, rest = self.process.communicate(timeout=30)
        self.guard.cancel()
        return "".join(self.lines) + rest


def exporter(ctl: ControllerHandle, token: str) -> dict[str, Any]:
    with ctl.http(token) as http:
        found = http.get("/v1/exporters").json()["exporters"]
    return dict(next(e for e in found if e["name"] == "bench-1"))


def test_a_failing_health_check_takes_the_exporter_out_and_a_passing_one_brings_it_back(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    broken.write_text("the board does not answer\n")
    issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
    config = tmp_path / "bench.yaml"
    health = (
        f'health: {{command: "cat {broken} 2>/dev/null && exit 1; echo fine", '
        "interval: 0.5, timeout: 20}\n"
    )
    config.write_text(issued.config + health + EXPORT)
    alice = ctl.admin.create_client("alice")
    serving = Serving(config)
    try:
        serving.wait_for("health check failed")
        seen = exporter(ctl, alice.token)
        assert seen["status"] == "unhealthy"
        assert "the board does not answer" in seen["health"]
        assert "exited with status 1" in seen["health"]
        with ctl.http(alice.token) as http:
            lease = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60})
            lease_id = lease.json()["id"]
            # Never granted while unhealthy (the long-poll returns at its end, still pending).
            still = http.get(f"/v1/leases/{lease_id}?wait=1&state=pending").json()
            assert still["state"] == "pending"
            failures = len(serving.lines)
            broken.unlink()  # the board is fixed: the next check passes, the lease is granted
            while still["state"] == "pending":
                still = http.get(f"/v1/leases/{lease_id}?wait=30&state=pending").json()
            assert still["state"] == "ready", still
            serving.wait_for("health check passed", failures)
            assert exporter(ctl, alice.token)["health"] is None
            # It breaks during the lease: the check after the lease takes it out again.
            broken.write_text("fell off the bench\n")
            mark = len(serving.lines)
            http.delete(f"/v1/leases/{lease_id}").raise_for_status()
            serving.wait_for("health check failed", mark)
            seen = exporter(ctl, alice.token)
            assert seen["status"] == "unhealthy"
            assert "fell off the bench" in seen["health"]
    finally:
        log = serving.stop()
    assert serving.process.returncode == 0, log


def test_metrics_listen_serves_sessions_hooks_and_health_checks(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    import httpx

    import tether

    issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
    config = tmp_path / "bench.yaml"
    extra = (
        "metrics_listen: 127.0.0.1:0\n"
        "hooks: {before_lease: 'echo up', after_lease: 'exit 4'}\n"
        "health: {command: 'true', interval: 3600}\n"
    )
    config.write_text(issued.config + extra + EXPORT)
    alice = ctl.admin.create_client("alice")
    serving = Serving(config)
    try:
        url = serving.wait_for("metrics at ").split("metrics at ")[1].strip()
        serving.wait_for("health check passed")
        account = {"controller": ctl.url, "token": alice.token, "ca": ctl.ca}
        with tether.lease("board=rpi4", "1m", **account) as dut:  # type: ignore[arg-type]
            dut.power.on()
            during = httpx.get(url).text
        mark = len(serving.lines)
        serving.wait_for("closed", mark)
        serving.wait_for("health check passed", mark)  # the check after the lease
        after = httpx.get(url).text
    finally:
        log = serving.stop()
    assert serving.process.returncode == 0, log
    assert 'tether_exporter_sessions_open{exporter="bench-1"} 1.0' in during
    assert 'tether_exporter_sessions_open{exporter="bench-1"} 0.0' in after
    assert 'tether_exporter_sessions_total{exporter="bench-1"} 1.0' in after
    ok = 'tether_exporter_hook_runs_total{exporter="bench-1",hook="before_lease",outcome="ok"} 1.0'
    failed = 'hook_runs_total{exporter="bench-1",hook="after_lease",outcome="failed"} 1.0'
    assert ok in after and failed in after
    assert 'tether_exporter_health_checks_total{exporter="bench-1",outcome="ok"} 2.0' in after
    assert 'tether_exporter_healthy{exporter="bench-1"} 1.0' in after
    assert "tether_exporter_hook_duration_seconds_count" in after
    on = 'tether_exporter_calls_total{error="none",exporter="bench-1",method="on"} 1.0'
    assert on in after, after
    assert (
        'tether_exporter_call_duration_seconds_count{exporter="bench-1",method="on"} 1.0' in after
    )


def test_metrics_listen_counts_the_bytes_of_byte_streams_by_direction(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    import socketserver

    import httpx

    import tether

    class Echo(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            while data := self.request.recv(65536):
                self.request.sendall(data.upper())

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo) as echo:
        threading.Thread(target=echo.serve_forever, daemon=True).start()
        issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
        config = tmp_path / "bench.yaml"
        port = echo.server_address[1]
        net = f"  net: {{type: tether.drivers.network.TcpNetwork, config: {{host: 127.0.0.1, port: {port}}}}}\n"
        config.write_text(issued.config + "metrics_listen: 127.0.0.1:0\n" + EXPORT + net)
        alice = ctl.admin.create_client("alice")
        serving = Serving(config)
        try:
            url = serving.wait_for("metrics at ").split("metrics at ")[1].strip()
            account = {"controller": ctl.url, "token": alice.token, "ca": ctl.ca}
            with (
                tether.lease("board=rpi4", "1m", **account) as dut,  # type: ignore[arg-type]
                dut.net.connect() as stream,
            ):
                stream.send(b"x" * 100_000)
                stream.send_eof()
                got = b""
                while chunk := stream.receive():
                    got += chunk
            assert got == b"X" * 100_000
            scraped = httpx.get(url).text
        finally:
            log = serving.stop()
            echo.shutdown()
    assert serving.process.returncode == 0, log
    labels = 'exporter="bench-1",method="connect",node="net"'
    sent = f'tether_exporter_stream_bytes_total{{direction="in",{labels}}} 100000.0'
    back = f'tether_exporter_stream_bytes_total{{direction="out",{labels}}} 100000.0'
    assert sent in scraped and back in scraped, scraped
    opened = 'tether_exporter_calls_total{error="none",exporter="bench-1",method="connect"} 1.0'
    assert opened in scraped


def test_a_metrics_port_in_use_is_a_clear_error_at_start(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    import socket

    issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "bench.yaml"
        config.write_text(issued.config + f"metrics_listen: 127.0.0.1:{port}\n" + EXPORT)
        argv = [sys.executable, "-c", "from tether.cli import main; main()", "exporter", "serve"]
        done = subprocess.run(
            [*argv, str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode != 0
    assert f"metrics_listen 127.0.0.1:{port}: cannot listen there" in done.stderr
    assert "in use" in done.stderr


def test_a_transition_health_check_calls_the_strategy_and_reports_it(
    ctl: ControllerHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    from relaylab import run_agent_exporter
    from tether import Driver, export

    asked: list[str] = []

    class Strategy(Driver):
        """A stand-in BootStrategy: ``transition("shell")`` fails while the board is broken."""

        broken = True

        @export
        def transition(self, state: str) -> None:
            asked.append(state)
            if Strategy.broken:
                raise RuntimeError("no shell prompt on the console")

    module = types.ModuleType("tether_health_agent_lab")
    module.Strategy = Strategy  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tether_health_agent_lab", module)
    issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
    alice = ctl.admin.create_client("alice")
    config = (
        issued.config
        + "health: {transition: shell, node: strategy, interval: 3600}\n"
        + "export:\n  strategy: {type: tether_health_agent_lab.Strategy}\n"
    )
    with run_agent_exporter(config) as running:
        result = running.run(running.agent.check_health())
        assert result is not None and not result.ok
        seen = exporter(ctl, alice.token)
        assert seen["status"] == "unhealthy"
        assert "strategy.transition('shell') failed" in seen["health"]
        assert "no shell prompt on the console" in seen["health"]
        Strategy.broken = False
        result = running.run(running.agent.check_health())
        assert result is not None and result.ok
        seen = exporter(ctl, alice.token)
        # Healthy again (it may still say `hook` until the heartbeat after the check lands).
        assert seen["health"] is None and seen["status"] in ("available", "hook"), seen
    assert asked[-2:] == ["shell", "shell"]
