"""Loopback sockets for the benchmarks: a discarding sink, a relay, timed transfers.

Everything here binds or connects to 127.0.0.1 only, and every loop is bounded by a byte count,
a deadline, or a socket time-out. Standard library only (also used in the Jumpstarter venv).
The sink runs in a process of its own, for every peer alike (see :class:`Sink`).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["LOOPBACK", "Relay", "Sink", "mb_per_s", "stream_mb_s", "timed_send"]

LOOPBACK = "127.0.0.1"
_RECV = 1 << 20
_POLL = 0.2


def _listen() -> socket.socket:
    server = socket.create_server((LOOPBACK, 0))
    server.settimeout(_POLL)
    return server


_SINK_MAIN = r"""
import os, selectors, socket, sys, time

selector = selectors.DefaultSelector()
server = socket.create_server(("127.0.0.1", 0))
server.setblocking(False)
selector.register(server, selectors.EVENT_READ, "accept")
selector.register(0, selectors.EVENT_READ, "command")
view = memoryview(bytearray(1 << 20))
received, waiting, commands = 0, None, b""
sys.stdout.write(f"{server.getsockname()[1]}\n")
sys.stdout.flush()

def reply(text):
    sys.stdout.write(text + "\n")
    sys.stdout.flush()

while True:
    timeout = None if waiting is None else max(0.0, waiting[1] - time.monotonic())
    for key, _ in selector.select(timeout):
        if key.data == "accept":
            conn, _ = server.accept()
            conn.setblocking(False)
            selector.register(conn, selectors.EVENT_READ, "data")
        elif key.data == "data":
            try:
                n = key.fileobj.recv_into(view)
            except BlockingIOError:
                continue
            except OSError:
                n = 0
            if n:
                received += n
            else:
                selector.unregister(key.fileobj)
                key.fileobj.close()
        else:
            chunk = os.read(0, 4096)
            if not chunk:
                sys.exit(0)
            commands += chunk
            while b"\n" in commands:
                line, commands = commands.split(b"\n", 1)
                word, *args = line.split()
                if word == b"reset":
                    received = 0
                    reply("ok")
                elif word == b"wait":
                    waiting = (int(args[0]), time.monotonic() + float(args[1]))
    if waiting is not None:
        if received >= waiting[0] or time.monotonic() >= waiting[1]:
            reply(f"{int(received >= waiting[0])} {received}")
            waiting = None
"""


class Sink:
    """A TCP server on 127.0.0.1 that reads and discards, counting the bytes it got.

    It runs in its own process (standard library only, started with this interpreter): the
    endpoint a byte stream reaches is never inside the exporter's or the client's process, and
    a sink thread would compete for the GIL with the code being measured. Accepts any number of
    connections until :meth:`close`.
    """

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _SINK_MAIN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._commands = self._proc.stdin
        self._replies = self._proc.stdout
        self.port: int = int(self._replies.readline())
        self.received = 0

    def _ask(self, command: str) -> str:
        self._commands.write(command + "\n")
        self._commands.flush()
        answer = self._replies.readline().strip()
        if not answer:
            raise RuntimeError(f"the sink process ended (exit code {self._proc.poll()})")
        return answer

    def reset(self) -> None:
        """Set the byte counter back to zero."""
        self._ask("reset")
        self.received = 0

    def wait_for(self, nbytes: int, timeout: float) -> bool:
        """Wait until ``nbytes`` arrived since :meth:`reset`; False on time-out."""
        ok, received = self._ask(f"wait {nbytes} {timeout}").split()
        self.received = int(received)
        return ok == "1"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._commands.close()
        try:
            self._proc.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._replies.close()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Relay:
    """A blocking-thread relay on 127.0.0.1: each accepted connection is spliced to ``port``.

    One thread copies client -> upstream (the direction the benchmark measures), a second one
    copies upstream -> client so that either side may close first.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._server = _listen()
        self.port: int = self._server.getsockname()[1]
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._run, name="bench-relay", daemon=True)
        self._thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        buf = bytearray(_RECV)
        view = memoryview(buf)
        while not self._closed.is_set():
            try:
                n = src.recv_into(view)
            except TimeoutError:
                continue
            except OSError:
                break
            if not n:
                break
            try:
                dst.sendall(view[:n])
            except OSError:
                break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection((LOOPBACK, self._upstream), timeout=5.0)
            for sock in (conn, upstream):
                sock.settimeout(_POLL)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for src, dst in ((conn, upstream), (upstream, conn)):
                thread = threading.Thread(target=self._pump, args=(src, dst), daemon=True)
                thread.start()
                self._threads.append(thread)

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for thread in [self._thread, *self._threads]:
            thread.join(timeout=2.0)

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def timed_send(
    sink: Sink,
    send: Callable[[bytes], object],
    *,
    chunk: int,
    max_bytes: int,
    seconds: float,
    finish: Callable[[], object] | None = None,
    drain_timeout: float = 30.0,
) -> tuple[int, float]:
    """Send ``chunk``-sized blocks until ``max_bytes`` or ``seconds``; wait for the sink.

    Returns ``(bytes, elapsed_seconds)`` from the first send until the sink has received every
    byte sent. ``finish`` (optional) runs after the last send, e.g. to send EOF.

    Raises:
        TimeoutError: the sink did not receive everything within ``drain_timeout``.
    """
    block = b"\xa5" * chunk
    count = max(1, max_bytes // chunk)
    sent = 0
    deadline = time.perf_counter() + seconds
    sink.reset()
    start = time.perf_counter()
    for _ in range(count):
        send(block)
        sent += chunk
        if time.perf_counter() >= deadline:
            break
    if finish is not None:
        finish()
    if not sink.wait_for(sent, drain_timeout):
        raise TimeoutError(f"sink got {sink.received} of {sent} bytes")
    return sent, time.perf_counter() - start


def mb_per_s(nbytes: int, seconds: float) -> float:
    """Throughput in MB/s (10**6 bytes per second)."""
    return nbytes / seconds / 1e6 if seconds > 0 else 0.0


def stream_mb_s(
    client: Any, sink: Sink, *, chunk: int, max_bytes: int, seconds: float
) -> tuple[float, int]:
    """MB/s of ``chunk``-sized blocks through ``client.stream("connect")`` into ``sink``.

    A short warm-up stream first (16 blocks), then the timed one. Returns ``(MB/s, bytes)``.
    """
    with client.stream("connect") as stream:
        timed_send(
            sink, stream.send, chunk=chunk, max_bytes=16 * chunk, seconds=1.0,
            finish=stream.send_eof,
        )  # fmt: skip
    with client.stream("connect") as stream:
        sent, elapsed = timed_send(
            sink, stream.send, chunk=chunk, max_bytes=max_bytes, seconds=seconds,
            finish=stream.send_eof,
        )  # fmt: skip
    return mb_per_s(sent, elapsed), sent
