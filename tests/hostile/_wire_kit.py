"""REAL PROCESSES kit for the wire's hostile-load tests: an exporter (``tether exporter
serve``) over TLS on loopback, its memory and descriptors from /proc, raw protocol peers that
misbehave on purpose, and the floods they make (``python -m bench.hostile`` runs the same
floods, for longer, while it times a legitimate client).

Every flood here is bounded in count and time; every wait has a safety time-out that is only
reached when something hangs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from tether.driver import ClientPolicy, DriverClient, build_client_tree
from tether.exporter import LabCerts, client_ssl_context, generate_token, hash_token
from tether.wire import Call, ClientConnection, Connection, Event, Hello, Ping, Role, TLSChannel
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

    def __init__(self, exporter: Exporter, *, source: str = "127.0.0.1") -> None:
        self.sock = tls_socket(exporter, source=source)
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


# -- floods (each bounded in count and in time) --------------------------------------------------


def long_hello() -> bytes:
    """A real HELLO frame too long to finish at a byte every 0.2 s within a test."""
    conn = Connection(Role.CLIENT)
    return conn.send(conn.hello(token=TOKEN, padding="x" * 400))


def half_hello() -> bytes:
    """The first half of a real HELLO: a peer past TLS that has not authenticated."""
    conn = Connection(Role.CLIENT)
    hello = conn.send(conn.hello(token=TOKEN))
    return hello[: len(hello) // 2]


def trickle(feeds: list[tuple[socket.socket, bytes]], stop: threading.Event, every: float) -> None:
    """The next byte of each connection's feed every ``every`` seconds until ``stop``: each
    byte would reset a deadline that restarted on every byte."""
    sent = 0
    while not stop.wait(every):
        for sock, feed in feeds:
            with contextlib.suppress(OSError):
                sock.send(feed[sent : sent + 1])
        sent += 1


def slow_tls_flood(exporter: Exporter, count: int, sources: list[str], stop: Any) -> int:
    """Hold ``count`` anonymous TLS connections (spread over ``sources``), each trickling a
    long HELLO a byte a second; the ones the handshake deadline drops are opened again.
    Returns how many were opened."""
    opened = 0
    held: list[tuple[ssl.SSLSocket, int]] = []  # (socket, bytes of the HELLO sent)
    feed = long_hello()
    while not stop.is_set():
        while len(held) < count and not stop.is_set():
            try:
                sock = tls_socket(exporter, source=sources[opened % len(sources)])
            except OSError:
                break  # refused (a cap): try again on the next round
            sock.setblocking(False)
            held.append((sock, 0))
            opened += 1
        kept = []
        for sock, sent in held:
            try:
                if sent < len(feed):
                    sock.send(feed[sent : sent + 1])
                kept.append((sock, sent + 1))
            except (BlockingIOError, ssl.SSLWantWriteError):
                kept.append((sock, sent))
            except OSError:  # dropped by the deadline
                sock.close()
        held = kept
        stop.wait(1.0)
    for sock, _ in held:
        sock.close()
    return opened


def ping_flood(peer: RawPeer, count: int, seconds: float) -> int:
    """PINGs in batches of 4,096, never reading the PONGs, until ``count`` were sent or
    ``seconds`` passed or the server dropped the peer. Returns how many were sent."""
    frames = [Ping(b"12345678")] * 4096  # 72 KiB of PINGs a send
    sent = 0
    deadline = time.monotonic() + seconds
    with contextlib.suppress(OSError):
        while sent < count and time.monotonic() < deadline:
            peer.send(*frames)
            sent += len(frames)
    return sent


def unread_calls(peer: RawPeer, calls: int, size: int) -> None:
    """``calls`` unary CALLs of ``blob(size)`` at once, whose results the peer never reads."""
    blob = peer.uuid("blob")
    peer.send(*(Call(sid, blob, "blob", [size]) for sid in range(1, 2 * calls, 2)))


def wait_dropped(peer: RawPeer, stop: Any, seconds: float) -> bool:
    """Without reading a byte, wait until the server dropped ``peer`` (a PING every 0.2 s
    fails to send once it did), ``stop`` is set or ``seconds`` passed. True if dropped."""
    deadline = time.monotonic() + seconds
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            peer.send(Ping(b"12345678"))
        except OSError:
            return True
        stop.wait(0.2)
    return False
