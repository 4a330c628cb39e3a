"""The blocking client connection: sync calls without an event-loop hop.

Theory of operation (leader/followers). Callers send from their own thread (whole frames
under a write lock, so frames never interleave), then wait for their stream's events. Whoever
waits and finds the socket unread takes the *read lock* and reads the socket itself (the
leader), feeding the sans-IO :class:`Connection` and handing every event to its stream's
waiter, until its own event arrives. Releasing the read lock hands the turn to another waiting
thread. A lone sync call therefore costs one socket round trip and no thread switch at all.

An idle thread watches the socket (``select``) only while nobody waits, so pings are answered,
a GoAway is seen and a dead server is noticed between calls.

Keepalive: when nothing was received for ``keepalive`` seconds the reader sends a PING; if
nothing arrives for ``2 * keepalive`` more, the connection is declared dead and every call in
flight fails with :class:`~tether.errors.ConnectionLost`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

from tether.errors import (
    AuthenticationFailed,
    CallCancelled,
    ConnectFailed,
    ConnectionLost,
    ProtocolError,
    TetherError,
    error_from_wire,
)

from ._connection import HEADER_SIZE, NEED_DATA, Connection
from ._events import (
    Call,
    Cancel,
    ConnectionClosed,
    Data,
    Error,
    Event,
    GoAway,
    Hello,
    Item,
    OpenStream,
    Ping,
    Pong,
    Result,
    WindowUpdate,
)
from ._state import Role
from ._tls import TLSChannel

__all__ = ["ClientConnection", "ClientStream"]

log = logging.getLogger("tether.wire.client")
_READ_CHUNK = 1 << 18
_CLOSED = object()


class _Waiter:
    """Where the reader thread leaves events for one stream."""

    __slots__ = ("events", "item_sizes", "waiting")

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.item_sizes: collections.deque[int] = collections.deque()
        self.waiting = False


#: Put in a waiter's queue: "the read lock is free, take your turn at reading".
_YOUR_TURN = object()
#: Put in a waiter's queue: "the send window of your stream grew".
_WINDOW = object()


class ClientConnection:
    """A client connection over a connected socket; implements ``CallTarget``.

    Args:
        sock: a connected stream socket (unix, TCP, or TLS-wrapped).
        meta: extra Hello metadata (token, session id, client name).
        keepalive: seconds of silence before a PING; ``None`` disables keepalive.
        handshake_timeout: seconds to wait for the server's Hello.

    Raises:
        AuthenticationFailed: the server rejected our credentials.
        ConnectFailed: the server closed or sent garbage during the handshake.
    """

    def __init__(
        self,
        sock: socket.socket | TLSChannel,
        *,
        meta: dict[str, Any] | None = None,
        keepalive: float | None = 10.0,
        handshake_timeout: float = 10.0,
    ) -> None:
        self._sock = sock
        self._sent_all = False
        self.conn = Connection(Role.CLIENT)
        self._state_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._waiters: dict[int, _Waiter] = {}
        self._error: BaseException | None = None
        self._closed = False
        self._keepalive = keepalive
        self._read_lock = threading.Lock()
        self._pinged_at: float | None = None
        self.server_meta = self._handshake(meta or {}, handshake_timeout)
        self._timeout: float | None = -1.0
        self._stopping = threading.Event()
        self._reader: threading.Thread | None = None
        if keepalive is not None:
            self._reader = threading.Thread(
                target=self._idle_loop, name="tether-keepalive", daemon=True
            )
            self._reader.start()

    # -- handshake ----------------------------------------------------------------------------

    def _handshake(self, meta: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._sock.settimeout(timeout)
        try:
            self._transmit([self.conn.send(self.conn.hello(**meta))])
            while True:
                data = self._sock.recv(_READ_CHUNK)
                self.conn.receive_data(data)
                event = self.conn.next_event()
                if event is NEED_DATA:
                    continue
                if isinstance(event, Hello):
                    return dict(event.meta)
                if isinstance(event, GoAway):
                    if event.code == "unauthenticated":
                        raise AuthenticationFailed(event.message or "authentication failed")
                    raise ConnectFailed(
                        f"server refused the connection: {event.code}: {event.message}"
                    )
                raise ConnectFailed("server closed the connection during the handshake")
        except (OSError, ProtocolError, ConnectionLost) as exc:
            self._sock.close()
            raise ConnectFailed(f"handshake failed: {exc}") from exc
        except TetherError:
            self._sock.close()
            raise

    # -- reading (leader/followers) ------------------------------------------------------------

    def _wait(self, waiter: _Waiter) -> Any:
        """Next event for ``waiter``; reads the socket itself when nobody else does."""
        events = waiter.events
        while True:
            try:
                event = events.get_nowait()
            except queue.Empty:
                pass
            else:
                if event is not _YOUR_TURN:
                    return event
                continue
            waiter.waiting = True
            try:
                if self._read_lock.acquire(blocking=False):
                    try:
                        while events.empty():
                            if self._error is not None:
                                return self._error
                            self._read_once(blocking=True)
                    finally:
                        self._read_lock.release()
                        self._hand_off()
                    continue
                event = events.get()
                if event is not _YOUR_TURN:
                    return event
            finally:
                waiter.waiting = False

    def _hand_off(self) -> None:
        """After releasing the read lock: wake one thread still waiting, to read next."""
        for waiter in list(self._waiters.values()):
            if waiter.waiting and waiter.events.empty():
                waiter.events.put(_YOUR_TURN)
                return

    def _read_once(self, *, blocking: bool) -> None:
        """Read once and dispatch (read lock held). Failures fail every waiter."""
        if self._error is not None:
            return
        try:
            try:
                timeout = self._keepalive if blocking else 0.0
                if timeout != self._timeout:
                    self._sock.settimeout(timeout)
                    self._timeout = timeout
                data = self._sock.recv(_READ_CHUNK)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            except TimeoutError:
                self._keepalive_tick()
                return
            self._pinged_at = None
            with self._state_lock:
                self.conn.receive_data(data)
                events: list[tuple[Event, int]] = []
                while True:
                    event = self.conn.next_event()
                    if event is NEED_DATA:
                        break
                    assert isinstance(event, Event)
                    events.append((event, self.conn.last_frame_size))
            for event, size in events:
                self._dispatch(event, size)
            if not data:
                raise ConnectionLost("the peer closed the connection")
        except ConnectionLost as exc:
            self._fail_all(exc)
        except ProtocolError as exc:
            error = ConnectionLost(f"protocol error: {exc}")
            error.__cause__ = exc
            self._fail_all(error)
        except OSError as exc:
            error = ConnectionLost(
                "the connection was closed" if self._closed else f"connection lost: {exc}"
            )
            error.__cause__ = exc
            self._fail_all(error)

    def _keepalive_tick(self) -> None:
        if self._keepalive is None:
            return
        now = time.monotonic()
        if self._pinged_at is None:
            self._pinged_at = now
            with contextlib.suppress(TetherError):
                self._send(Ping())
        elif now - self._pinged_at >= 2 * self._keepalive:
            raise ConnectionLost(f"no answer from the peer for {3 * self._keepalive:g} s")

    def _idle_loop(self) -> None:
        """Every ``keepalive / 2`` seconds, read whatever arrived if no caller is reading.

        A timer, not a watcher: watching the socket would wake this thread on every reply and
        cost each call a thread switch. Pings come only after ``keepalive`` of silence and may
        be answered within ``2 * keepalive``, so this period is always in time.
        """
        assert self._keepalive is not None
        while not self._stopping.wait(self._keepalive / 2):
            if self._error is not None:
                return
            if not self._read_lock.acquire(blocking=False):
                continue  # a caller is reading, and answering pings itself
            try:
                self._read_once(blocking=False)
                if self._error is None and self._idle_timed_out():
                    self._fail_all(ConnectionLost("keepalive: the peer stopped answering"))
            finally:
                self._read_lock.release()
                self._hand_off()

    def _idle_timed_out(self) -> bool:
        try:
            self._keepalive_tick()
        except ConnectionLost:
            return True
        return False

    def _dispatch(self, event: Event, size: int) -> None:
        cls = type(event)
        if cls is Ping:
            assert isinstance(event, Ping)
            with contextlib.suppress(TetherError):
                self._send(Pong(event.payload))
            return
        if cls is Pong or cls is ConnectionClosed:
            return
        if cls is GoAway:
            assert isinstance(event, GoAway)
            log.info("server is closing the connection: %s %s", event.code, event.message)
            return
        waiter = self._waiters.get(event.stream_id)  # type: ignore[attr-defined]
        if waiter is None:
            return
        if cls is WindowUpdate:
            waiter.events.put(_WINDOW)
            return
        if cls is Item:
            waiter.item_sizes.append(size)
        waiter.events.put(event)

    def _fail_all(self, error: BaseException) -> None:
        with self._state_lock:
            if self._error is None:
                self._error = error
            waiters = list(self._waiters.values())
        for waiter in waiters:
            waiter.events.put(error)

    # -- sending ------------------------------------------------------------------------------

    def _transmit(self, parts: list[Any]) -> bool:
        """Write whole frames (write lock held). Returns True; on an interruption (Ctrl-C)
        re-raises after noting whether everything went out (``_sent_all``).

        A frame cut in half would corrupt the stream, so an interruption in the middle of one
        breaks the connection instead.
        """
        total = sum(len(part) for part in parts)
        sent = 0
        try:
            if not isinstance(self._sock, socket.socket) or len(parts) == 1:
                view = memoryview(parts[0] if len(parts) == 1 else b"".join(parts))
                while sent < total:
                    sent += self._sock.send(view[sent:])
            else:
                pending = list(parts)
                while pending:
                    count = self._sock.sendmsg(pending)
                    sent += count
                    while pending and count >= len(pending[0]):
                        count -= len(pending.pop(0))
                    if count:
                        pending[0] = memoryview(pending[0])[count:]
        except OSError as exc:
            raise ConnectionLost(f"connection lost: {exc}") from exc
        except BaseException:
            self._sent_all = sent == total
            if 0 < sent < total:
                self._fail_all(ConnectionLost("interrupted in the middle of a frame"))
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)
            raise
        return True

    def _send(self, event: Event) -> None:
        with self._write_lock:
            with self._state_lock:
                self._check_open()
                data = self.conn.send(event)
            if data:
                self._transmit([data])

    def _send_data(self, event: Data) -> None:
        """Send a DATA frame without joining header and payload (no copy of the payload)."""
        with self._write_lock:
            with self._state_lock:
                self._check_open()
                parts = self.conn.send_parts(event)
            if parts:
                self._transmit(parts)

    def _open(
        self,
        cls: type[Call] | type[OpenStream],
        node: str,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> tuple[int, _Waiter]:
        waiter = _Waiter()
        try:
            with self._write_lock:
                with self._state_lock:
                    self._check_open()
                    sid = self.conn.next_stream_id()
                    data = self.conn.send(cls(sid, node, method, args, kwargs))
                    self._waiters[sid] = waiter
                self._sent_all = False
                self._transmit([data])
        except BaseException:
            if "sid" in locals():
                if self._sent_all:
                    self._cancel(sid)  # the call reached the exporter: cancel it there
                else:
                    self._waiters.pop(sid, None)
            raise
        return sid, waiter

    def _check_open(self) -> None:
        if self._error is not None:
            raise ConnectionLost(str(self._error)) from self._error
        if self._closed:
            raise ConnectionLost("the connection is closed")

    def _cancel(self, sid: int) -> None:
        self._waiters.pop(sid, None)
        with contextlib.suppress(TetherError, OSError):
            self._send(Cancel(sid))

    @staticmethod
    def _raise_if_error(event: Event | BaseException) -> None:
        if isinstance(event, BaseException):
            raise ConnectionLost(str(event)) from event
        if type(event) is Error:
            assert isinstance(event, Error)
            raise error_from_wire(event.error)

    # -- CallTarget ---------------------------------------------------------------------------

    def call(self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        sid, waiter = self._open(Call, node, method, args, kwargs)
        try:
            event = self._wait(waiter)
        except BaseException:
            self._cancel(sid)
            raise
        self._waiters.pop(sid, None)
        if type(event) is Result:
            return event.value
        self._raise_if_error(event)
        raise ConnectionLost(f"unexpected {type(event).__name__} for a unary call")

    def streaming_call(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        sid, waiter = self._open(Call, node, method, args, kwargs)
        finished = False
        try:
            while True:
                event = self._wait(waiter)
                if event is _WINDOW:
                    continue
                if type(event) is Item:
                    assert isinstance(event, Item)
                    yield event.value
                    self._ack(sid, waiter.item_sizes.popleft())
                    continue
                if type(event) is Result:
                    finished = True
                    return
                finished = True
                self._raise_if_error(event)
        finally:
            self._waiters.pop(sid, None)
            if not finished:
                self._cancel(sid)

    def _ack(self, sid: int, consumed: int) -> None:
        with self._write_lock:
            with self._state_lock:
                data = self.conn.ack_data(sid, consumed)
            if data:
                with contextlib.suppress(TetherError):
                    self._transmit([data])

    @contextlib.contextmanager
    def open_stream(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[ClientStream]:
        sid, waiter = self._open(OpenStream, node, method, args, kwargs)
        stream = ClientStream(self, sid, waiter)
        try:
            event = self._wait(waiter)
            if type(event) is not Result:
                self._waiters.pop(sid, None)
                self._raise_if_error(event)
            yield stream
        except BaseException:
            stream.abort()
            raise
        stream.finish()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._error is None and not self._closed

    def close(self) -> None:
        """Say goodbye and close the socket; calls in flight fail with ConnectionLost."""
        if self._closed:
            return
        with contextlib.suppress(TetherError, OSError):
            self._send(GoAway())
        self._closed = True
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        if self._reader is not None and threading.current_thread() is not self._reader:
            self._reader.join()
        self._sock.close()
        self._fail_all(ConnectionLost("the connection was closed"))

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ClientStream:
    """A blocking byte stream over a connection (from ``DriverClient.stream``)."""

    def __init__(self, owner: ClientConnection, stream_id: int, waiter: _Waiter) -> None:
        self._owner = owner
        self._sid = stream_id
        self._waiter = waiter
        self._eof_sent = False
        self._eof_received = False
        self._aborted = False
        self._limit = owner.conn.peer_max_frame
        self._parked: collections.deque[Any] = collections.deque()

    def send(self, data: bytes) -> None:
        """Send bytes, blocking while the peer's window is full."""
        if self._eof_sent:
            raise ConnectFailed("send() after send_eof()")
        view = memoryview(data)
        conn = self._owner.conn
        while view:
            while conn.send_window(self._sid) <= 0:
                self._owner._check_open()
                if not conn.is_live(self._sid):
                    raise CallCancelled("the stream was closed by the peer")
                self._park(self._owner._wait(self._waiter))
            chunk = view[: self._limit]
            self._owner._send_data(Data(self._sid, chunk))
            view = view[self._limit :]

    def send_eof(self) -> None:
        """Half-close: the driver's side sees end of input; receiving goes on."""
        if not self._eof_sent:
            self._eof_sent = True
            self._owner._send(Data(self._sid, b"", end=True))

    def _park(self, event: Any) -> None:
        """Keep an event that arrived while waiting for window, for ``receive``."""
        if event is not _WINDOW:
            self._parked.append(event)

    def receive(self) -> bytes:
        """Next chunk of bytes; ``b""`` once the driver ended its side."""
        if self._eof_received:
            return b""
        if self._parked:
            event = self._parked.popleft()
        else:
            event = self._owner._wait(self._waiter)
            while event is _WINDOW:
                event = self._owner._wait(self._waiter)
        if type(event) is Data:
            assert isinstance(event, Data)
            if event.end:
                self._eof_received = True
            if event.data:
                self._owner._ack(self._sid, len(event.data) + HEADER_SIZE)
            return bytes(event.data)
        self._eof_received = True
        self._owner._raise_if_error(event)
        return b""

    def finish(self, timeout: float = 5.0) -> None:
        """Close gracefully: send EOF, drain the driver's side until its EOF, then forget.

        Data sent before closing is delivered, as with a socket. A driver that does not end
        its side within ``timeout`` seconds is cancelled.
        """
        if self._aborted:
            return
        with contextlib.suppress(TetherError):
            self.send_eof()
        deadline = time.monotonic() + timeout
        try:
            while not self._eof_received:
                if time.monotonic() > deadline:
                    self.abort()
                    return
                self.receive()
        except TetherError:
            pass
        self._owner._waiters.pop(self._sid, None)

    def abort(self) -> None:
        if not self._aborted:
            self._aborted = True
            self._owner._cancel(self._sid)
