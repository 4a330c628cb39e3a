"""A real TCP echo server on 127.0.0.1 for the forwarding tests."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        while data := sock.recv(1 << 16):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def echo_server() -> Iterator[int]:
    """Yield the port of an echo server that answers until each client half-closes."""
    server = _Server(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def exchange(port: int, payload: bytes) -> bytes:
    """Send ``payload`` to 127.0.0.1:port, half-close, return everything received until EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sender = threading.Thread(
            target=lambda: (sock.sendall(payload), sock.shutdown(socket.SHUT_WR))
        )
        sender.start()
        received = bytearray()
        while chunk := sock.recv(1 << 16):
            received += chunk
        sender.join()
    return bytes(received)
