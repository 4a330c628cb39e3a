"""Accepting connections with bounded resources: the caps and the accept loop.

An unauthenticated peer costs a file descriptor, a task and a few KiB until its Hello is
accepted; nothing it does can make that more, and these bound how many it may hold:

* :class:`ConnectionLimits`: at most ``max_connections`` open connections, and at most
  ``max_per_peer`` from one peer address; a refused connection is closed at once, before any
  TLS work, and the refusal is logged (at most once a second, with a count). An address
  whose connection was dropped for a flood (its protocol's ``flooded``) is refused for
  ``FLOOD_PENALTY`` seconds: reconnecting at once would make the flood one of handshakes.
* :func:`serve_listener`: the accept loop that applies them, then starts TLS (with its own
  deadline, ``handshake_timeout``, counted from the accept) and hands the transport to a
  protocol (``ServerProtocol`` has the deadline for the client's Hello).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

__all__ = [
    "DEFAULT_MAX_PER_PEER",
    "FLOOD_PENALTY",
    "ConnectionLimits",
    "Listener",
    "bind_tcp",
    "bind_unix",
    "serve_listener",
]

log = logging.getLogger("tether.wire.listener")

#: Connections one peer address may hold at once.
DEFAULT_MAX_PER_PEER = 64
#: Seconds an address is refused after one of its connections was dropped for a flood.
FLOOD_PENALTY = 10.0
#: Addresses remembered as penalised at most (expired ones are forgotten first).
_MAX_PENALISED = 4096


def _default_max_connections() -> int:
    """Half the descriptor limit (the drivers need the rest), at most 4096."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(16, min(4096, soft // 2))


class ConnectionLimits:
    """Caps on open connections, overall and per peer address (see the module docstring).

    Args:
        max_connections: open connections at most (default: half the process's
            descriptor limit, at most 4096).
        max_per_peer: open connections at most from one peer address (default 64).
    """

    def __init__(
        self, max_connections: int | None = None, max_per_peer: int = DEFAULT_MAX_PER_PEER
    ) -> None:
        self.max_connections = max_connections or _default_max_connections()
        self.max_per_peer = max_per_peer
        self.open = 0
        self.by_peer: dict[str, int] = {}
        self.refused = 0
        self._unlogged = 0
        self._logged_at = 0.0
        #: address -> monotonic time until which it is refused (after a flood)
        self._penalised: dict[str, float] = {}

    def penalise(self, peer: str, seconds: float = FLOOD_PENALTY) -> None:
        """Refuse ``peer``'s connections for ``seconds`` (not "local": every unix peer)."""
        if peer == "local":
            return
        now = time.monotonic()
        if len(self._penalised) >= _MAX_PENALISED:
            self._penalised = {p: t for p, t in self._penalised.items() if t > now}
        if len(self._penalised) < _MAX_PENALISED:
            self._penalised[peer] = now + seconds

    def admit(self, peer: str) -> bool:
        """Count a new connection from ``peer``; ``False`` (and logged) when over a cap."""
        held = self.by_peer.get(peer, 0)
        until = self._penalised.get(peer)
        if until is not None and time.monotonic() >= until:
            del self._penalised[peer]
            until = None
        if until is not None:
            why = f"{peer} flooded a connection; refused for {FLOOD_PENALTY:g} s"
        elif self.open >= self.max_connections:
            why = f"{self.open} connections open (max_connections {self.max_connections})"
        elif held >= self.max_per_peer:
            why = f"{held} connections from {peer} (max_per_peer {self.max_per_peer})"
        else:
            self.open += 1
            self.by_peer[peer] = held + 1
            return True
        self.refused += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at >= 1.0:
            log.warning("refused %d connection(s), the last from %s: %s", self._unlogged, peer, why)
            self._unlogged, self._logged_at = 0, now
        return False

    def release(self, peer: str) -> None:
        """A connection from ``peer`` ended."""
        self.open -= 1
        held = self.by_peer.get(peer, 0) - 1
        if held > 0:
            self.by_peer[peer] = held
        else:
            self.by_peer.pop(peer, None)


class Listener:
    """A running accept loop (what :func:`serve_listener` returns); like ``asyncio.Server``."""

    def __init__(self, sock: socket.socket, task: asyncio.Task[None]) -> None:
        self.sockets = [sock]
        self._task = task
        self.connections: set[asyncio.Task[None]] = set()

    def close(self) -> None:
        """Stop accepting (connections already open go on)."""
        self._task.cancel()
        for sock in self.sockets:
            sock.close()

    async def wait_closed(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def _peer_of(address: Any) -> str:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return "local"  # a unix socket: every peer is this host


async def serve_listener(
    sock: socket.socket,
    factory: Callable[[], asyncio.BaseProtocol],
    limits: ConnectionLimits,
    *,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout: float = 10.0,
) -> Listener:
    """Accept on the listening ``sock`` (it becomes the listener's), within ``limits``.

    Each accepted connection gets ``factory()``'s protocol, after the TLS handshake when
    ``ssl_context`` is given; the handshake must finish within ``handshake_timeout`` seconds.
    The protocol must have a ``closed`` event (as ``ServerProtocol`` does): the connection
    counts against the caps until it is set.
    """
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    listener: Listener

    async def serve_one(conn: socket.socket, peer: str) -> None:
        # The protocol as the factory made it: with TLS, uvloop returns its SSL protocol.
        made: list[Any] = []

        def make() -> asyncio.BaseProtocol:
            made.append(factory())
            return made[0]  # type: ignore[no-any-return]

        try:
            await loop.connect_accepted_socket(
                make,
                conn,
                ssl=ssl_context,
                ssl_handshake_timeout=handshake_timeout if ssl_context is not None else None,
            )
            await made[0].closed.wait()
            if getattr(made[0], "flooded", False):
                limits.penalise(peer)
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            log.info("connection from %s failed before its protocol: %s", peer, exc)
            conn.close()
        finally:
            limits.release(peer)

    async def accept_loop() -> None:
        while True:
            try:
                conn, address = await loop.sock_accept(sock)
            except OSError as exc:  # EMFILE and the like: back off a little, go on
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            peer = _peer_of(address)
            if not limits.admit(peer):
                conn.close()
                continue
            conn.setblocking(False)
            if conn.family != socket.AF_UNIX:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(serve_one(conn, peer))
            listener.connections.add(task)
            task.add_done_callback(listener.connections.discard)

    listener = Listener(sock, loop.create_task(accept_loop()))
    return listener


def bind_tcp(host: str, port: int, backlog: int = 512) -> socket.socket:
    """A listening TCP socket on ``host`` (its first address) and ``port`` (0: any free)."""
    family, _, _, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address[:2], family=family, backlog=backlog)


def bind_unix(path: str, backlog: int = 512) -> socket.socket:
    """A listening unix socket at ``path`` (which must not exist)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock
