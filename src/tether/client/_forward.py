"""``PortForward``: a byte-stream export as a local TCP listener, like ``ssh -L``.

Theory of operation. One thread accepts on the listening socket (and on a wake-up socket, so
``close`` never waits on a blocking ``accept``). Each accepted connection gets a thread that
opens a new byte stream on the node (``client.stream(method)``) and copies bytes back to the
local socket, plus a second thread copying the local socket into the stream. End of input is
passed through in both directions (half-close), as a TCP proxy does; the connection ends when
both directions ended. Failures of one connection are logged and never stop the listener.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
from types import TracebackType
from typing import Any

from tether.driver import DriverClient
from tether.errors import ConfigError, TetherError
from tether.wire import copy_both_ways, copy_bytes

__all__ = ["PortForward", "byte_stream_methods"]

log = logging.getLogger("tether.client.forward")
_CHUNK = 1 << 16
_JOIN_TIMEOUT = 5.0


def byte_stream_methods(client: DriverClient) -> list[str]:
    """Names of the node's ``export_stream`` methods, in report order."""
    return [name for name, m in client.methods.items() if m.get("kind") == "byte_stream"]


class PortForward:
    """Forward local TCP connections to a byte-stream method of one node.

    Each connection accepted on ``host:port`` opens a new stream, so a forwarded ssh port
    serves as many sessions as you like. Use as a context manager::

        with PortForward(dut.board.ssh) as fwd:
            subprocess.run(["ssh", "-p", str(fwd.port), "root@127.0.0.1"])

    Args:
        client: the node to forward to.
        method: its byte-stream method; ``None`` picks the node's only one.
        host: the local address to listen on (loopback by default: anyone who can connect
            can use the device).
        port: the local port; ``0`` picks a free one (read it from :attr:`port`).

    Raises:
        ConfigError: the node has no such byte-stream method (or several and none was named).
        OSError: the local address cannot be bound (from ``start``/``__enter__``).
    """

    def __init__(
        self,
        client: DriverClient,
        method: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.client = client
        self.method = _pick_method(client, method)
        self.host = host
        self.requested_port = port
        self.port = 0
        #: Connections accepted so far.
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._acceptor: threading.Thread | None = None

    def start(self) -> PortForward:
        """Bind and start accepting; :attr:`port` is the bound port afterwards."""
        if self._listener is not None:
            raise RuntimeError("PortForward.start() called twice")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.requested_port))
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"tether-forward-{self.port}", daemon=True
        )
        self._acceptor.start()
        return self

    def close(self) -> None:
        """Stop accepting and end every forwarded connection."""
        if self._closing.is_set():
            return
        self._closing.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._acceptor is not None:
            self._acceptor.join()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(_JOIN_TIMEOUT)
        if self._listener is not None:
            self._listener.close()
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self) -> PortForward:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def active(self) -> int:
        """Connections being forwarded right now."""
        with self._lock:
            return len(self._sockets)

    # -- threads ------------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not self._closing.is_set():
                for key, _ in selector.select():
                    if key.fileobj is self._wake_r:
                        return
                    try:
                        sock, peer = self._listener.accept()
                    except OSError as exc:
                        log.warning("accept failed: %s", exc)
                        continue
                    self._spawn(sock, peer)

    def _spawn(self, sock: socket.socket, peer: Any) -> None:
        self.accepted += 1
        thread = threading.Thread(
            target=self._serve, args=(sock, peer), name=f"tether-forward-{peer}", daemon=True
        )
        with self._lock:
            self._sockets.add(sock)
            self._threads.add(thread)
        thread.start()

    def _serve(self, sock: socket.socket, peer: Any) -> None:
        try:
            with self.client.stream(self.method) as stream:

                def down() -> BaseException | None:
                    error = copy_bytes(
                        stream.receive, sock.sendall, lambda: _shut(sock, socket.SHUT_WR)
                    )
                    if error is not None:
                        _shut(sock, socket.SHUT_RDWR)  # the upstream copy's recv ends too
                    return error

                def up() -> BaseException | None:
                    error = copy_bytes(lambda: sock.recv(_CHUNK), stream.send)
                    if isinstance(error, TetherError):
                        log.debug("forward %s: upstream ended: %s", _peer(peer), error)
                        return None
                    # EOF or the local side is gone: end our input, the remote side finishes.
                    with contextlib.suppress(TetherError):
                        stream.send_eof()
                    return None

                error, _ = copy_both_ways(down, up, name=f"tether-forward-up-{_peer(peer)}")
                if error is not None:
                    raise error
        except (TetherError, OSError) as exc:
            if not self._closing.is_set():
                log.warning(
                    "forward %s -> %s.%s: %s", _peer(peer), self.client.name, self.method, exc
                )
        finally:
            sock.close()
            with self._lock:
                self._sockets.discard(sock)
                self._threads.discard(threading.current_thread())


def _shut(sock: socket.socket, how: int) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(how)


def _pick_method(client: DriverClient, method: str | None) -> str:
    streams = byte_stream_methods(client)
    where = client.report.get("path") or client.name
    if method is not None:
        if method in streams:
            return method
        kind = client.methods.get(method, {}).get("kind")
        problem = f"is a {kind} method" if kind else "does not exist"
        raise ConfigError(
            f"node {where!r}: method {method!r} {problem}; byte-stream methods: "
            f"{', '.join(streams) or 'none'}"
        )
    if len(streams) == 1:
        return streams[0]
    if not streams:
        raise ConfigError(f"node {where!r} has no byte-stream method to forward")
    raise ConfigError(
        f"node {where!r} has several byte-stream methods ({', '.join(streams)}): name one"
    )


def _peer(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)
