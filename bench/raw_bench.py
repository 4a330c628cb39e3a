"""Raw Python socket baselines on loopback: the floor any framework's figures sit on.

- ping-pong: a small message to an echo thread and back, blocking sockets, TCP_NODELAY
  (``call_p50_us`` / ``call_p99_us`` / ``calls_per_s``), and the same over a unix socketpair
  (``call_p50_us_unix``);
- bulk: 64 KiB ``sendall`` to a discarding sink thread (``bulk_mb_s``);
- relay: client -> relay thread -> sink, the shape of a byte stream through an exporter
  (``relay_mb_s``).

Run ``python -m bench.raw_bench [--quick]`` to print the results as one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import threading
from typing import Any

from bench._report import time_calls
from bench._sockets import LOOPBACK, Relay, Sink, mb_per_s, timed_send

__all__ = ["run"]

MESSAGE = b"m" * 64
CHUNK = 64 * 1024


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            raise ConnectionError("peer closed")
        data += part
    return data


def _echo(sock: socket.socket) -> None:
    with sock, contextlib.suppress(OSError):
        sock.settimeout(10.0)
        while True:
            data = sock.recv(65536)
            if not data:
                return
            sock.sendall(data)


def _ping_pong(client: socket.socket, server: socket.socket, count: int, seconds: float) -> dict:
    thread = threading.Thread(target=_echo, args=(server,), daemon=True)
    thread.start()
    client.settimeout(10.0)

    def call() -> None:
        client.sendall(MESSAGE)
        _recv_exact(client, len(MESSAGE))

    try:
        return time_calls(call, count=count, seconds=seconds, warmup=200)
    finally:
        client.close()
        thread.join(timeout=5.0)


def _tcp_pair() -> tuple[socket.socket, socket.socket]:
    with socket.create_server((LOOPBACK, 0)) as listener:
        listener.settimeout(5.0)
        client = socket.create_connection(listener.getsockname(), timeout=5.0)
        server, _ = listener.accept()
    for sock in (client, server):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return client, server


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the raw baselines; every loop is bounded in count and time."""
    calls = 2000 if quick else 20000
    call_seconds = 1.0 if quick else 3.0
    stream_bytes = (256 if quick else 2048) * 1024 * 1024
    stream_seconds = 1.0 if quick else 3.0
    out: dict[str, Any] = {"notes": []}

    tcp = _ping_pong(*_tcp_pair(), calls, call_seconds)
    out["call_p50_us"] = tcp["p50_us"]
    out["call_p99_us"] = tcp["p99_us"]
    out["calls_per_s"] = tcp["per_s"]
    unix = _ping_pong(*socket.socketpair(), calls, call_seconds)
    out["call_p50_us_unix"] = unix["p50_us"]
    out["call_p99_us_unix"] = unix["p99_us"]

    with Sink() as sink:
        with socket.create_connection((LOOPBACK, sink.port), timeout=10.0) as conn:
            sent, elapsed = timed_send(
                sink, conn.sendall, chunk=CHUNK, max_bytes=stream_bytes, seconds=stream_seconds
            )
        out["bulk_mb_s"] = mb_per_s(sent, elapsed)

        with Relay(sink.port) as relay:
            with socket.create_connection((LOOPBACK, relay.port), timeout=10.0) as conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sent, elapsed = timed_send(
                    sink,
                    conn.sendall,
                    chunk=CHUNK,
                    max_bytes=stream_bytes,
                    seconds=stream_seconds,
                    finish=lambda: conn.shutdown(socket.SHUT_WR),
                )
            out["relay_mb_s"] = mb_per_s(sent, elapsed)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_bench")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    json.dump(run(quick=args.quick), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
