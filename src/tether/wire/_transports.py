"""What the blocking client sends and receives through: the transport seam.

:class:`ClientConnection` never touches a socket itself; it talks to a :class:`ClientTransport`:

* :class:`SocketTransport`: a connected stream socket (unix, TCP) or a
  :class:`~tether.wire.TLSChannel`;
* ``tether.wire._spinning.SpinningTransport``: the same, polling briefly before it blocks
  (the fast path; chosen by who makes the connection, see ``docs/architecture.md``);
* :class:`~tether.wire.MockTransport`: no socket at all, answers from a function (for tests
  of client code, like httpx's ``MockTransport``).

The connection calls :meth:`~ClientTransport.send` with whole frames under its write lock (one
sender at a time) and :meth:`~ClientTransport.receive` under its read lock (one reader at a
time); the two may run at once on different threads.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from typing import Any

from ._tls import TLSChannel

__all__ = ["READ_CHUNK", "ClientTransport", "SocketTransport"]

#: The most one receive returns.
READ_CHUNK = 1 << 18


class ClientTransport:
    """Base class of the client's transports (see the module docstring)."""

    def send(self, parts: list[Any], counts: list[int]) -> None:
        """Send all of ``parts`` (buffers), blocking as long as it takes; append the count
        of every partial send to ``counts`` as it happens (a Ctrl-C must not lose it).

        Raises:
            OSError: the transport is broken or was shut down.
        """
        raise NotImplementedError

    def receive(self, timeout: float | None, *, soon: bool = True) -> bytes:
        """Block until bytes arrive (``b""``: the peer closed).

        ``soon=False`` says the answer is not expected within a round trip (the handshake:
        the server opens a session first), so a transport that polls before it blocks should
        not poll.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds (``None``: no limit).
            OSError: the transport is broken or was shut down.
        """
        raise NotImplementedError

    def receive_nowait(self) -> bytes | None:
        """Bytes that already arrived (``b""``: the peer closed), or ``None``."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """Stop both directions: a sender or reader blocked in another thread returns."""

    def close(self) -> None:
        """Release the transport (after :meth:`shutdown`)."""


class SocketTransport(ClientTransport):
    """A connected, blocking stream socket or :class:`TLSChannel`.

    Args:
        sock: the socket; the transport owns it from now on.
    """

    def __init__(self, sock: socket.socket | TLSChannel) -> None:
        self.sock = sock
        self._timeout: float | None = -1.0
        self._shut = False

    def send(self, parts: list[Any], counts: list[int]) -> None:
        sock = self.sock
        total = len(parts[0]) if len(parts) == 1 else sum(len(part) for part in parts)
        if len(parts) == 1:
            data = parts[0]
            self._patiently(counts, sock.send, data)  # almost always all of it at once
            if counts[-1] < total:
                view = memoryview(data)
                done = counts[-1]
                while done < total:
                    self._patiently(counts, sock.send, view[done:])
                    done += counts[-1]
            return
        pending = list(parts)
        while pending:
            self._patiently(counts, sock.sendmsg, pending)
            count = counts[-1]
            while pending and count >= len(pending[0]):
                count -= len(pending.pop(0))
            if count:
                pending[0] = memoryview(pending[0])[count:]

    def _patiently(self, counts: list[int], send: Any, data: Any) -> None:
        """``send(data)``, its count appended to ``counts``; waits through the time-out.

        ``extend(map(...))`` calls ``send`` and stores its count from C: a Ctrl-C is raised at
        the next bytecode after the system call, and must not lose how much went out. A slow
        reader is not a dead one: keepalive decides that, and shuts the socket down.
        """
        while True:
            try:
                counts.extend(map(send, (data,)))
                return
            except TimeoutError:
                if self._shut:
                    raise

    def receive(self, timeout: float | None, *, soon: bool = True) -> bytes:
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout
        return self.sock.recv(READ_CHUNK)

    def receive_nowait(self) -> bytes | None:
        # Not settimeout(0): that would make a concurrent sender's socket non-blocking too,
        # and a full send buffer would look like a dead peer.
        try:
            return self.sock.recv(READ_CHUNK, socket.MSG_DONTWAIT)
        except (BlockingIOError, ssl.SSLWantReadError):
            return None

    def shutdown(self) -> None:
        self._shut = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.sock.close()
