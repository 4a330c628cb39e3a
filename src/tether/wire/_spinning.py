"""Waiting for a peer's answer without the GIL: the in-process fast path.

``tether.testing.serve`` runs the driver's loop on one thread and the client on another, in
one process, over a socket pair. Both threads need the GIL, and on a virtual machine every
time a thread sleeps its virtual CPU halts; waking it again costs tens of microseconds and
comes back with cold caches. Measured here: a call takes ~35 us when both threads share one
CPU and 130-170 us when they sit on two, although the work is the same.

Three rules remove every sleep from a call's round trip:

* **Publish after releasing the GIL.** A thread that sends while it holds the GIL wakes its
  peer only for the peer to sleep again on the GIL. :func:`send_then_poll` (in C,
  ``_native.c``) releases the GIL, then sends.
* **Poll, do not block, for a short while.** After sending, the same call polls for the answer
  (zero time-outs, still without the GIL), for up to ``spin`` seconds, then gives up and lets
  the caller block. Spins that find nothing make the next ``SPIN_SKIP`` waits block at once,
  so a slow exchange costs almost no CPU.
* **Spin only on a CPU of your own.** When the kernel runs both threads on one CPU (it does so
  for a ping-pong pair when the other CPU is busy), a spinner keeps its peer from running: the
  answer comes only once the spinner is preempted. So the helper does not spin when the peer
  (the other thread that passed through it last) ran on this CPU (``POLL_DECLINED``: block
  now, a switch on one CPU is cheap), and a spin that finds itself off its CPU for 20 us
  (preempted) stops and counts as one that found nothing.

The client gets the second from :class:`SpinningTransport` (the socket's own ``send`` already
releases the GIL before it publishes; the poll runs after the connection's write lock is
released, in the reader). The server's loop gets both from :class:`SpinningSelector`:
:class:`DeferredTransport` holds the protocol's writes until the loop is about to block, and
the selector sends them and polls its epoll descriptor in one :func:`send_then_poll`.

This module is the whole fast path: ``tether.testing.serve`` and ``tether.connect`` choose it
(``ClientConnection(spin=...)`` wraps a socket in :class:`SpinningTransport`); the connection
and the server read as if it were not there.

The extension is optional (``setup.py``): without it ``NATIVE`` is false, ``serve()`` uses the
default loop and the client does not spin (a spin that holds the GIL costs more in-process
than it saves).
"""

from __future__ import annotations

import asyncio
import os
import selectors
import socket
import ssl
import sys
import time
from collections.abc import Iterable
from typing import Any

from ._server import ServerProtocol, SessionResolver
from ._tls import TLSChannel
from ._transports import READ_CHUNK, SocketTransport

try:
    from . import _native
except ImportError:  # pragma: no cover - built wherever a C compiler is
    _native = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_SPIN",
    "NATIVE",
    "POLL_DECLINED",
    "POLL_NOTHING",
    "POLL_READY",
    "SPIN_SKIP",
    "DeferredTransport",
    "DeferringServerProtocol",
    "SpinningSelector",
    "SpinningTransport",
    "send_then_poll",
]

#: Whether the C helper is there (see the module's docstring). It polls an epoll descriptor:
#: elsewhere than on Linux it is not used.
NATIVE = _native is not None and sys.platform == "linux"
#: Waits that block at once after a spin that found nothing.
SPIN_SKIP = 16
#: Default spin (seconds): about two loopback round trips of a small call.
DEFAULT_SPIN = 200e-6
#: What :func:`send_then_poll` returns: nothing arrived (or the spin lost its CPU), the poll
#: descriptor is readable, the spin was declined (the peer runs on this CPU).
POLL_NOTHING, POLL_READY, POLL_DECLINED = 0, 1, 2
#: Pending writes at most this large are joined and sent by the selector; larger ones (byte
#: streams, where a poll for an answer gains nothing) go to the transport as they are.
_JOIN_MAX = 64 << 10


def send_then_poll(
    fd: int,
    data: Any,
    poll_fd: int,
    spin: float,
    counts: list[int],
    *,
    share: bool = False,
    block: float | None = 0.0,
) -> int:
    """Send what ``fd`` takes of ``data`` at once, then poll ``poll_fd`` for up to ``spin``
    seconds; all without the GIL. Returns ``POLL_READY`` when ``poll_fd`` is readable, else
    ``POLL_NOTHING``; with ``share`` (a peer thread in this process answers), ``POLL_DECLINED``
    when it did not spin because the peer ran on this CPU (see the module docstring).

    When the spin found nothing and all of ``data`` went out, it then waits up to ``block``
    seconds (``None``: no limit) for ``poll_fd``, still without the GIL; the result stays the
    spin's.

    The count of bytes sent is appended to ``counts`` from C: a Ctrl-C raised just after the
    call cannot lose it (the client must know whether a frame went out whole).

    Raises:
        OSError: the send failed (not for a full socket buffer: that sends less).
        RuntimeError: the C extension is not built (check ``NATIVE`` first).
    """
    if _native is None:  # pragma: no cover
        raise RuntimeError("tether.wire._native is not built")
    block_ns = -1 if block is None else int(block * 1e9)
    return _native.send_then_poll(fd, data, poll_fd, int(spin * 1e9), counts, share, block_ns)


if sys.platform == "linux":
    _Epoll = selectors.EpollSelector
else:  # pragma: no cover - the class is defined, never used (NATIVE is false)
    _Epoll = selectors.DefaultSelector


class SpinningSelector(_Epoll):
    """An epoll selector that, before the loop blocks, sends the deferred writes and polls
    for the answer without the GIL.

    Args:
        spin: seconds to poll after sending, before blocking in ``epoll_wait``.
    """

    def __init__(self, spin: float) -> None:
        super().__init__()
        self.spin = spin
        self._queued: list[DeferredTransport] = []
        self._skip = 0

    @property
    def has_deferred(self) -> bool:
        """Whether a transport's writes wait for the next :meth:`select`."""
        return bool(self._queued)

    def defer(self, transport: DeferredTransport) -> None:
        """Send ``transport``'s pending bytes before the loop next blocks (once per batch)."""
        self._queued.append(transport)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if self._queued:
            queued, self._queued = self._queued, []
            spin = 0.0
            if timeout is None or timeout > 0:  # the loop would block: wait for the answer
                if self._skip:
                    self._skip -= 1
                else:
                    spin = self.spin if timeout is None else min(self.spin, timeout)
            handed_over = False
            for transport in queued[:-1]:
                handed_over |= transport.flush(-1, 0.0) is None
            # The wait for events, too, happens in the helper (it then returns with events
            # ready or the time-out over): see send_then_poll's ``block``.
            block = 0.0 if handed_over else None if timeout is None else max(0.0, timeout - spin)
            answered = queued[-1].flush(self.fileno(), spin, block)
            if spin and answered == POLL_NOTHING:
                self._skip = SPIN_SKIP
            # After a wait in the helper, or when an asyncio transport may have scheduled
            # callbacks (connection_lost after an error, pause_writing's waiters), the loop
            # must look at once.
            timeout = 0
        return super().select(timeout)


class DeferredTransport(asyncio.Transport):
    """A socket transport whose writes wait for the loop's :class:`SpinningSelector`.

    Holds what the protocol writes during one turn of the loop and sends it, without the
    GIL, just before the loop blocks. Bytes already queued in the wrapped transport (a full
    socket) keep their order: later writes then go through it.
    """

    def __init__(self, transport: asyncio.Transport, selector: SpinningSelector) -> None:
        super().__init__()
        self._transport = transport
        self._selector = selector
        self._fd = transport.get_extra_info("socket").fileno()
        self._pending: list[bytes | bytearray | memoryview] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            self._selector.defer(self)
        self._pending.append(data)
        self._size += len(data)

    def writelines(self, parts: Iterable[bytes | bytearray | memoryview]) -> None:
        for part in parts:
            self.write(part)

    def flush(self, poll_fd: int, spin: float, block: float | None = 0.0) -> int | None:
        """Send what is pending, then poll ``poll_fd`` for ``spin`` seconds (0: not at all)
        and wait up to ``block`` more for it (see :func:`send_then_poll`).

        Returns what :func:`send_then_poll` does, or ``None`` when the helper did not run:
        nothing to send, a closing transport, or the bytes went to the asyncio transport
        instead (behind bytes it holds, too many to join, a send error), which may have
        scheduled callbacks then.
        """
        pending, size = self._pending, self._size
        self._pending, self._size = [], 0
        transport = self._transport
        if not pending or transport.is_closing():
            return None
        if transport.get_write_buffer_size() or size > _JOIN_MAX:
            transport.writelines(pending)
            return None
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        counts: list[int] = []
        try:
            answered = send_then_poll(
                self._fd, data, poll_fd, spin, counts, share=True, block=block
            )
        except OSError:
            # The transport meets the same error and reports it to the protocol.
            transport.write(data)
            return None
        if counts[0] < len(data):
            transport.write(memoryview(data)[counts[0] :])
            return None
        return answered

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return self._size + self._transport.get_write_buffer_size()

    def close(self) -> None:
        """Hand what is pending to the transport, then close it (it sends what it holds)."""
        if self._pending and not self._transport.is_closing():
            self._transport.writelines(self._pending)
        self._pending, self._size = [], 0
        self._transport.close()

    def abort(self) -> None:
        self._pending, self._size = [], 0
        self._transport.abort()


class DeferringServerProtocol(ServerProtocol):
    """A :class:`ServerProtocol` whose writes go through a :class:`DeferredTransport`."""

    def __init__(self, resolve: SessionResolver, selector: SpinningSelector, **kwargs: Any) -> None:
        super().__init__(resolve, **kwargs)
        self._selector = selector

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        super().connection_made(DeferredTransport(transport, self._selector))


class SpinningTransport(SocketTransport):
    """A :class:`SocketTransport` whose reads poll for up to ``spin`` seconds before they block.

    On a virtual machine, waking a blocked thread on another vCPU costs more than a loopback
    round trip (50-60 us here against 25-30 us), and a polling reader avoids it. Adaptive:
    a spin that finds nothing makes the next ``SPIN_SKIP`` reads block at once, so slow calls
    cost next to no CPU. On a plain socket with the C helper built the poll runs without the
    GIL (what lets an in-process peer answer); otherwise it is a Python loop, which only pays
    across processes (``tether.testing.serve`` passes no spin then).

    Args:
        sock: the connected socket or TLS channel.
        spin: seconds to poll before blocking.
    """

    def __init__(self, sock: socket.socket | TLSChannel, spin: float = DEFAULT_SPIN) -> None:
        super().__init__(sock)
        self.spin = spin
        self._skip = 0
        self._native = NATIVE and isinstance(sock, socket.socket)

    def receive(self, timeout: float | None, *, soon: bool = True) -> bytes:
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout
        if soon and not self._skip:
            data = self._poll()
            if data is not None:
                return data
        else:  # skipping, or the handshake (its answer is not a round trip away): no spin
            self._skip -= soon and self._skip > 0
            if self._native:  # a peer in this process may wait for the GIL we let go of now
                fd = self.sock.fileno()
                send_then_poll(fd, b"", fd, 0.0, [], share=True)
        return self.sock.recv(READ_CHUNK)

    def _poll(self) -> bytes | None:
        """What a spin finds, or ``None`` (then the next ``SPIN_SKIP`` reads block at once,
        unless the spin was declined: its peer shares this CPU this time)."""
        sock = self.sock
        if self._native:
            fd = sock.fileno()
            found = send_then_poll(fd, b"", fd, self.spin, [], share=True)
            if found == POLL_READY:
                return sock.recv(READ_CHUNK)
            if found == POLL_NOTHING:
                self._skip = SPIN_SKIP
            return None
        # A socket with a time-out polls before every recv (even with MSG_DONTWAIT): read
        # its descriptor, which is non-blocking then. TLSChannel skips that poll itself.
        fd = -1 if isinstance(sock, TLSChannel) or not sock.gettimeout() else sock.fileno()
        deadline = time.perf_counter() + self.spin
        while True:
            try:
                if fd >= 0:
                    return os.read(fd, READ_CHUNK)
                return sock.recv(READ_CHUNK, socket.MSG_DONTWAIT)
            except (BlockingIOError, ssl.SSLWantReadError):
                if time.perf_counter() >= deadline:
                    self._skip = SPIN_SKIP
                    return None
