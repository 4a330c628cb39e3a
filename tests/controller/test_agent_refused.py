"""One agent per exporter identity, the agent's side (issue 12, item 8): when the controller
refuses this agent because another one serves the same exporter (HTTP 409, at registration or
later: fenced), the agent says so clearly and stops: it does not retry in a loop, and it does
not report the exporter ``offline`` (that is the other agent's exporter now).

The controller's own refusal is the controller's to test; here an HTTPS endpoint over real TLS
answers as a refusing controller does (``RefusingEndpoint``), so the agent's reaction is
checked on its own, with its real HTTP client."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tether.errors import ControllerError
from tether.exporter import ControllerAgent, Exporter, parse_config
from tether.security import init_lab_certs, server_ssl_context

REFUSAL = {"error": "agent_conflict", "message": "exporter bench-1 is served by another agent"}


class RefusingEndpoint:
    """HTTPS on loopback answering the agent's requests; refuses with 409 at ``refuse_at``."""

    def __init__(self, certs_dir: Path, refuse_at: str) -> None:
        certs = init_lab_certs(certs_dir)
        self.ca = certs.ca
        self.requests: list[tuple[str, str, dict[str, Any], str]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size)) if size else {}
                path = self.path.split("?")[0]
                endpoint.requests.append((method, path, body, self.headers.get("Tether-Agent", "")))
                if path == refuse_at:
                    status, answer = 409, REFUSAL
                elif path == "/v1/exporter/register":
                    status, answer = 200, {"name": "bench-1", "leases": []}
                elif path == "/v1/exporter/leases":
                    status, answer = 200, {"leases": [], "version": "v1"}
                else:
                    status, answer = 200, {"leases": []}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                self._answer("POST")

            def do_GET(self) -> None:
                self._answer("GET")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context: ssl.SSLContext = server_ssl_context(certs.server_cert, certs.server_key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(params=["/v1/exporter/register", "/v1/exporter/leases"])
def endpoint(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RefusingEndpoint]:
    server = RefusingEndpoint(tmp_path / "certs", refuse_at=request.param)
    yield server
    server.close()


def test_a_refused_agent_says_why_and_stops(endpoint: RefusingEndpoint, tmp_path: Path) -> None:
    config = parse_config(
        f"name: bench-1\ncontroller: {{endpoint: {endpoint.url}, token: tth_x, ca: {endpoint.ca}}}\n"
        "export:\n  power: {type: tether.drivers.power.MockPower}\n",
        tmp_path / "bench.yaml",
    )

    async def run() -> ControllerAgent:
        exporter = Exporter(config)
        await exporter.start()
        agent = ControllerAgent.from_config(exporter, config, retry=0.01, max_retry=0.01)
        try:
            with pytest.raises(ControllerError) as refused:
                await asyncio.wait_for(agent.run(), 30)
        finally:
            await exporter.aclose()
        message = str(refused.value)
        assert refused.value.status == 409 and refused.value.code == "agent_conflict"
        assert "refused this agent of exporter 'bench-1'" in message
        assert "served by another agent" in message and "this one stops" in message
        assert "tth_x" not in message
        return agent

    agent = asyncio.run(run())
    assert agent.refused
    registers = [r for r in endpoint.requests if r[1] == "/v1/exporter/register"]
    assert len(registers) == 1  # no retry loop
    assert not [r for r in endpoint.requests if r[2].get("status") == "offline"]
    # Every request names this agent instance, so a controller can tell two agents apart.
    assert {r[3] for r in endpoint.requests} == {agent.instance}


def test_tether_exporter_serve_exits_with_the_refusal(
    endpoint: RefusingEndpoint, tmp_path: Path
) -> None:
    config = tmp_path / "bench.yaml"
    config.write_text(
        f"name: bench-1\ncontroller: {{endpoint: {endpoint.url}, token: tth_x, ca: {endpoint.ca}}}\n"
        "export:\n  power: {type: tether.drivers.power.MockPower}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", "from tether.cli import main; main()", "exporter", "serve", config],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert "error: controller https://127.0.0.1:" in done.stderr
    assert "another agent with this exporter's token serves it" in done.stderr
    assert "Traceback" not in done.stderr
