"""REAL PROCESSES kit for the wire's hostile-load tests: an exporter (``tether exporter
serve``) over TLS on loopback, its memory and descriptors from /proc, and raw protocol peers
that misbehave on purpose.

Every flood here is bounded in count and time; every wait has a safety time-out that is only
reached when something hangs.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tether.driver import ClientPolicy, DriverClient, build_client_tree
from tether.exporter import LabCerts, client_ssl_context, generate_token, hash_token
from tether.wire import ClientConnection, Connection, Event, Hello, Role, TLSChannel
from tether.wire._frames import FrameDecoder, encode_event

TETHER = Path(sys.executable).parent / "tether"
TOKEN = generate_token()
SAFETY = 25.0  # seconds; only ever reached when something hangs

DRIVERS = """
from tether import Driver, export


class Blob(Driver):
    @export
    async def blob(self, size: int) -> bytes:
        return bytes(size)
"""


def write_config(tmp_path: Path, certs: LabCerts, limits: str = "") -> Path:
    (tmp_path / "hostile_drivers.py").write_text(DRIVERS)
    lines = [
        "name: hostile",
        f"tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}",
        f"tokens: [{hash_token(TOKEN)}]",
        "listen: [tls://127.0.0.1:0]",
        *([f"limits: {limits}"] if limits else []),
        "export:",
        "  power: {type: tether.drivers.power.MockPower}",
        "  blob: {type: hostile_drivers.Blob}",
    ]
    path = tmp_path / "hostile.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Exporter:
    """The exporter process; ``url`` once ready."""

    def __init__(self, tmp_path: Path, certs: LabCerts, limits: str = "") -> None:
        self.certs = certs
        self.log = tmp_path / "exporter.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [str(TETHER), "exporter", "serve", str(write_config(tmp_path, certs, limits))],
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        self.url = ""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("listening on "):
                self.url = line.strip().removeprefix("listening on ")
            if line.strip() == "ready":
                break
        assert self.url, textwrap.indent(self.log.read_text(errors="replace"), "  ")
        self.port = int(self.url.rsplit(":", 1)[1])

    def status(self, key: str) -> int:
        """A ``/proc/PID/status`` figure in KiB (``VmRSS``, ``VmHWM``)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise AssertionError(key)

    def rss_mb(self) -> float:
        return self.status("VmRSS") / 1024

    def peak_mb(self) -> float:
        return self.status("VmHWM") / 1024

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.process.pid}/fd"))

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log_file.close()


def context(certs: LabCerts) -> ssl.SSLContext:
    return client_ssl_context(certs.ca)


def tls_socket(exporter: Exporter, *, source: str = "127.0.0.1") -> ssl.SSLSocket:
    """A TLS connection (handshake done), from ``source``."""
    raw = socket.create_connection(("127.0.0.1", exporter.port), SAFETY, (source, 0))
    return context(exporter.certs).wrap_socket(raw, server_hostname="localhost")


class RawPeer:
    """A protocol peer that does only what the test says (and never reads unless told)."""

    def __init__(self, exporter: Exporter) -> None:
        self.sock = tls_socket(exporter)
        conn = Connection(Role.CLIENT)
        self.sock.sendall(conn.send(conn.hello(token=TOKEN)))
        self.decoder = FrameDecoder(1 << 24)
        hello = self.next_event()
        assert isinstance(hello, Hello), hello
        self.report: list[dict[str, Any]] = hello.meta["report"]

    def send(self, *events: Event) -> None:
        """Frames built by hand (no state machine: this peer breaks the rules on purpose)."""
        self.sock.sendall(b"".join(encode_event(event) for event in events))

    def uuid(self, name: str) -> str:
        return next(str(e["uuid"]) for e in self.report if e["name"] == name)

    def next_event(self) -> Any:
        while (frame := self.decoder.next_frame()) is None:
            data = self.sock.recv(1 << 16)
            if not data:
                return None
            self.decoder.feed(data)
        return frame[0]

    def drain(self) -> list[Any]:
        """Every frame until the server closes the connection."""
        events = []
        try:
            while (event := self.next_event()) is not None:
                events.append(event)
        except (ConnectionResetError, ssl.SSLError):
            pass
        return events

    def close(self) -> None:
        self.sock.close()


def legit_client(
    exporter: Exporter, *, source: str = "127.0.0.1"
) -> tuple[ClientConnection, DriverClient]:
    """A real blocking client (the ``tether.connect`` stack), from ``source``."""
    channel = TLSChannel(
        socket.create_connection(("127.0.0.1", exporter.port), SAFETY, (source, 0)),
        context(exporter.certs),
        "localhost",
    )
    connection = ClientConnection(channel, meta={"token": TOKEN}, keepalive=None)
    tree = build_client_tree(
        connection.server_meta["report"], connection, ClientPolicy(unsafe=True)
    )
    return connection, tree
