"""The blocking client connection: sync calls without an event-loop hop.

Theory of operation (leader/followers). Callers send from their own thread (whole frames
under a write lock, so frames never interleave), then wait for their stream's events. Whoever
waits and finds the socket unread takes the *read lock* and reads the socket itself (the
leader), feeding the sans-IO :class:`Connection` and handing every event to its stream's
waiter, until its own event arrives. Releasing the read lock hands the turn to another waiting
thread. A lone sync call therefore costs one socket round trip and no thread switch at all.

An idle thread watches the socket (``select``) only while nobody waits, so pings are answered,
a GoAway is seen and a dead server is noticed between calls.

Spinning: before it blocks, the leader polls the socket without blocking for up to ``spin``
seconds. A thread that blocks gives up its CPU, and on a virtual machine waking it again on
another virtual CPU can cost more than the whole call (50-60 us per wake-up here, against a
25-30 us loopback round trip). The spin is adaptive: when a reply did not come within it, the
next ``SPIN_SKIP`` reads block at once, so slow calls (a power cycle, a flash) cost almost no
spinning. On a plain socket, with the C helper built, a unary call sends its frame and polls
for the reply in one step without the GIL (``_spinning.send_then_poll``), which is what lets
an in-process peer (``tether.testing.serve``, a thread of this process) answer without ever
waiting for the GIL. Without the helper, in-process connections do not spin.

Keepalive: when nothing was received for ``keepalive`` seconds the reader sends a PING; if
nothing arrives for ``2 * keepalive`` more, the connection is declared dead and every call in
flight fails with :class:`~tether.errors.ConnectionLost` (so within about ``3 * keepalive``).
"""

from __future__ import annotations

import contextlib
import logging
import os
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

from ._connection import NEED_DATA, Connection
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
from ._spinning import NATIVE, SPIN_SKIP, send_then_poll
from ._state import Role
from ._tls import TLSChannel

__all__ = ["ClientConnection", "ClientStream"]

log = logging.getLogger("tether.wire.client")
_READ_CHUNK = 1 << 18
_CLOSED = object()
#: The idle reader's longest nap (seconds): how late an idle client may answer a PING.
_IDLE_PERIOD_MAX = 1.0
#: Default ``spin``: about two loopback round trips of a small call.
DEFAULT_SPIN = 200e-6


class _Slot:
    """One thread's wait: where the reader leaves its events, and whether it is waiting."""

    __slots__ = ("events", "waiting")

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.waiting = False


class _Waiter:
    """Where the reader thread leaves events for one stream.

    Two slots, because a byte stream may be sent on one thread and received on another:
    ``inbox`` gets what the receiving side waits for (results, items, data, EOF, errors),
    ``credit`` wakes a sender blocked on a full window (window grew, stream ended, errors).
    One shared queue let either thread swallow the other's event.
    """

    __slots__ = ("credit", "credit_signalled", "inbox")

    def __init__(self) -> None:
        self.inbox = _Slot()
        self.credit = _Slot()
        #: A wake-up sits in ``credit`` (so window updates queue at most one).
        self.credit_signalled = False


class _Opening:
    """A stream being opened, filled in step by step so that an interruption at any point
    tells :meth:`ClientConnection._abandon` whether the frame reached the exporter."""

    __slots__ = ("sent", "sid", "size", "waiter")

    def __init__(self) -> None:
        self.sid = 0
        self.size = -1
        self.sent: list[int] = []
        self.waiter = _Waiter()


#: Put in a slot's queue: "the read lock is free, take your turn at reading".
_YOUR_TURN = object()
#: Put in a credit slot: "look at your stream's send window again".
_WINDOW = object()


class ClientConnection:
    """A client connection over a connected socket; implements ``CallTarget``.

    Args:
        sock: a connected stream socket (unix, TCP, or TLS-wrapped).
        meta: extra Hello metadata (token, session id, client name).
        keepalive: seconds of silence before a PING; ``None`` disables keepalive.
        handshake_timeout: seconds to wait for the server's Hello (``None``: no limit).
        spin: seconds a reader polls for a reply before it blocks (0: block at once; see the
            module's docstring).

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
        handshake_timeout: float | None = 10.0,
        spin: float = DEFAULT_SPIN,
    ) -> None:
        self._sock = sock
        self._spin = spin
        self._spin_skip = 0
        #: Send-then-poll without the GIL: a plain socket and the C helper (see _spinning).
        self._native_spin = spin > 0 and NATIVE and not isinstance(sock, TLSChannel)
        self.conn = Connection(Role.CLIENT)
        self._state_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._waiters: dict[int, _Waiter] = {}
        self._error: BaseException | None = None
        self._closed = False
        self._keepalive = keepalive
        self._read_lock = threading.Lock()
        self._pinged_at: float | None = None
        self._received_at = time.monotonic()
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

    def _handshake(self, meta: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        self._sock.settimeout(timeout)
        try:
            event = self._first_event(meta)
        except (OSError, ProtocolError, ConnectionLost) as exc:
            self._sock.close()
            raise ConnectFailed(f"handshake failed: {exc}") from exc
        except BaseException:
            self._sock.close()
            raise
        if isinstance(event, Hello):
            return dict(event.meta)
        self._sock.close()
        # Decided outside the socket-error mapping above: AuthenticationFailed is an OSError
        # (via ConnectionError), and an exporter's rejection is not a socket error.
        if isinstance(event, GoAway):
            if event.code == "unauthenticated":
                raise AuthenticationFailed(event.message or "authentication failed")
            raise ConnectFailed(f"server refused the connection: {event.code}: {event.message}")
        raise ConnectFailed("server closed the connection during the handshake")

    def _first_event(self, meta: dict[str, Any]) -> Event:
        """Send our Hello and read until the server's first event (Hello, GoAway, closed)."""
        self._transmit([self.conn.send(self.conn.hello(**meta))])
        while True:
            self.conn.receive_data(self._sock.recv(_READ_CHUNK))
            event = self.conn.next_event()
            if event is not NEED_DATA:
                assert isinstance(event, Event)
                return event

    # -- reading (leader/followers) ------------------------------------------------------------

    def _wait(self, slot: _Slot) -> Any:
        """Next event for ``slot``; reads the socket itself when nobody else does."""
        events = slot.events
        while True:
            if not events.empty():  # only this thread takes from its own queue
                event = events.get_nowait()
                if event is not _YOUR_TURN:
                    return event
                continue
            slot.waiting = True
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
                slot.waiting = False

    def _hand_off(self) -> None:
        """After releasing the read lock: wake one thread still waiting, to read next."""
        for waiter in list(self._waiters.values()):
            for slot in (waiter.inbox, waiter.credit):
                if slot.waiting and slot.events.empty():
                    slot.events.put(_YOUR_TURN)
                    return

    def _read_once(self, *, blocking: bool) -> None:
        """Read once and dispatch (read lock held). Failures fail every waiter."""
        if self._error is not None:
            return
        try:
            try:
                if blocking:
                    if self._keepalive != self._timeout:
                        self._sock.settimeout(self._keepalive)
                        self._timeout = self._keepalive
                    spun = self._spin_read() if self._spin else None
                    data = self._sock.recv(_READ_CHUNK) if spun is None else spun
                else:
                    # Not settimeout(0): that would make a concurrent sender's socket
                    # non-blocking too, and a full send buffer would look like a dead peer.
                    data = self._sock.recv(_READ_CHUNK, socket.MSG_DONTWAIT)
            except (BlockingIOError, ssl.SSLWantReadError):
                return
            except TimeoutError:
                self._keepalive_tick(silent=True)  # a whole ``keepalive`` without a byte
                return
            self._pinged_at = None
            if self._keepalive is not None:
                self._received_at = time.monotonic()
            with self._state_lock:
                self.conn.receive_data(data)
                events: list[Event] = []
                while True:
                    event = self.conn.next_event()
                    if event is NEED_DATA:
                        break
                    assert isinstance(event, Event)
                    events.append(event)
            for event in events:
                self._dispatch(event)
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

    def _spin_read(self) -> bytes | None:
        """Poll the socket for up to ``spin`` seconds; ``None`` if nothing came (then skip
        spinning for a while)."""
        if self._spin_skip:
            self._spin_skip -= 1
            return None
        sock = self._sock
        if self._native_spin:
            assert isinstance(sock, socket.socket)
            if send_then_poll(sock.fileno(), b"", sock.fileno(), self._spin, []):
                return sock.recv(_READ_CHUNK)
            self._spin_skip = SPIN_SKIP
            return None
        # A socket with a time-out polls before every recv (even with MSG_DONTWAIT): read
        # its descriptor, which is non-blocking then. TLSChannel skips that poll itself.
        fd = -1 if isinstance(sock, TLSChannel) or not sock.gettimeout() else sock.fileno()
        deadline = time.perf_counter() + self._spin
        while True:
            try:
                if fd >= 0:
                    return os.read(fd, _READ_CHUNK)
                return sock.recv(_READ_CHUNK, socket.MSG_DONTWAIT)
            except (BlockingIOError, ssl.SSLWantReadError):
                if time.perf_counter() >= deadline:
                    self._spin_skip = SPIN_SKIP
                    return None

    def _keepalive_tick(self, *, silent: bool = False) -> None:
        """PING after ``keepalive`` of silence; raise ConnectionLost ``2 * keepalive`` later."""
        if self._keepalive is None:
            return
        now = time.monotonic()
        if self._pinged_at is None:
            if not silent and now - self._received_at < self._keepalive:
                return  # the idle timer ticked, but the peer spoke recently
            self._pinged_at = now
            with contextlib.suppress(TetherError):
                self._send(Ping())
        elif now - self._pinged_at >= 2 * self._keepalive:
            raise ConnectionLost(f"no answer from the peer for {3 * self._keepalive:g} s")

    def _idle_loop(self) -> None:
        """Every ``keepalive / 2`` seconds (at most 1 s), read whatever arrived if no caller is
        reading: answer the server's PINGs, notice a GoAway, and PING a silent server.

        A timer, not a watcher: watching the socket would wake this thread on every reply and
        cost each call a thread switch. The 1 s cap bounds how late an idle client answers a
        server's PING, whatever its own ``keepalive``.
        """
        assert self._keepalive is not None
        period = min(self._keepalive / 2, _IDLE_PERIOD_MAX)
        while not self._stopping.wait(period):
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

    def _dispatch(self, event: Event) -> None:
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
            self._signal_credit(waiter)
            return
        waiter.inbox.events.put(event)
        if cls is Error or cls is Result:
            self._signal_credit(waiter)  # the stream ended: a blocked sender must see it

    @staticmethod
    def _signal_credit(waiter: _Waiter) -> None:
        """Wake the stream's sender (if it waits). The connection state already shows the
        new window, and the sender clears the flag before it looks again: none is lost."""
        if not waiter.credit_signalled:
            waiter.credit_signalled = True
            waiter.credit.events.put(_WINDOW)

    def _fail_all(self, error: BaseException) -> None:
        with self._state_lock:
            first = self._error is None
            if first:
                self._error = error
            waiters = list(self._waiters.values())
        if first:
            # Wakes a sender blocked on a peer that will never read again.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        for waiter in waiters:
            waiter.inbox.events.put(error)
            waiter.credit.events.put(error)

    # -- sending ------------------------------------------------------------------------------

    def _transmit(self, parts: list[Any], sent: list[int] | None = None) -> None:
        """Write whole frames (write lock held); ``sent`` collects the count of every send.

        A frame cut in half would corrupt the stream, so an interruption (Ctrl-C) in the
        middle of one breaks the connection instead.
        """
        sock = self._sock
        done: list[int] = [] if sent is None else sent
        total = len(parts[0]) if len(parts) == 1 else sum(len(part) for part in parts)
        try:
            if len(parts) == 1:
                data = parts[0]
                self._patiently(done, sock.send, data)  # almost always all of it at once
                if done[-1] < total:
                    view = memoryview(data)
                    while (count := sum(done)) < total:
                        self._patiently(done, sock.send, view[count:])
            else:
                pending = list(parts)
                while pending:
                    self._patiently(done, sock.sendmsg, pending)
                    count = done[-1]
                    while pending and count >= len(pending[0]):
                        count -= len(pending.pop(0))
                    if count:
                        pending[0] = memoryview(pending[0])[count:]
        except OSError as exc:
            raise ConnectionLost(f"connection lost: {exc}") from exc
        except BaseException:
            if 0 < sum(done) < total:
                self._fail_all(ConnectionLost("interrupted in the middle of a frame"))
            raise

    def _patiently(self, done: list[int], send: Any, data: Any) -> None:
        """``send(data)``, its count appended to ``done``; waits through the socket's time-out.

        ``extend(map(...))`` calls ``send`` and stores its count from C: a Ctrl-C is raised at
        the next bytecode after the system call, and must not lose how much went out. A peer
        that is slow to read is not a dead one: keepalive decides that, and then shuts the
        socket down, which ends this wait with an OSError.
        """
        while True:
            try:
                done.extend(map(send, (data,)))
                return
            except TimeoutError:
                if self._error is not None or self._closed:
                    raise

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
        opening: _Opening,
        cls: type[Call] | type[OpenStream],
        node: str,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> None:
        """Open a stream, recording each step in ``opening`` for :meth:`_abandon`."""
        with self._write_lock:
            with self._state_lock:
                self._check_open()
                opening.sid = sid = self.conn.next_stream_id()
                data = self.conn.send(cls(sid, node, method, args, kwargs))
                self._waiters[sid] = opening.waiter
            opening.size = len(data)
            if cls is Call and self._native_spin and not self._spin_skip:
                self._transmit_then_poll(data, opening.sent)
            else:
                self._transmit([data], opening.sent)

    def _transmit_then_poll(self, data: bytes, sent: list[int]) -> None:
        """Send a whole frame and poll for the answer, without the GIL (write lock held).

        The poll ends as soon as anything arrives (the reader then takes it at once) or after
        ``spin``; then the next ``SPIN_SKIP`` reads block without spinning.
        """
        sock = self._sock
        assert isinstance(sock, socket.socket)
        first = len(sent)
        try:
            answered = send_then_poll(sock.fileno(), data, sock.fileno(), self._spin, sent)
            if sent[first] == len(data):
                if not answered:
                    self._spin_skip = SPIN_SKIP
                return
            view = memoryview(data)  # a full socket buffer: the rest as _transmit sends it
            while (count := sum(sent[first:])) < len(data):
                self._patiently(sent, sock.send, view[count:])
        except OSError as exc:
            raise ConnectionLost(f"connection lost: {exc}") from exc
        except BaseException:
            if 0 < sum(sent[first:]) < len(data):
                self._fail_all(ConnectionLost("interrupted in the middle of a frame"))
            raise

    def _abandon(self, opening: _Opening) -> None:
        """The caller gave up (an error, Ctrl-C) at any point of opening or waiting."""
        sent = sum(opening.sent)
        if sent and sent == opening.size:
            self._cancel(opening.sid)  # the frame reached the exporter: cancel it there
        else:
            self._waiters.pop(opening.sid, None)

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
        opening = _Opening()
        # One try around opening and waiting: an interruption between the two (even at the
        # return of _open) still cancels the call on the exporter.
        try:
            self._open(opening, Call, node, method, args, kwargs)
            event = self._wait(opening.waiter.inbox)
        except BaseException:
            self._abandon(opening)
            raise
        self._waiters.pop(opening.sid, None)
        if type(event) is Result:
            return event.value
        self._raise_if_error(event)
        raise ConnectionLost(f"unexpected {type(event).__name__} for a unary call")

    def streaming_call(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        opening = _Opening()
        try:
            self._open(opening, Call, node, method, args, kwargs)
        except BaseException:
            self._abandon(opening)
            raise
        sid, waiter = opening.sid, opening.waiter
        finished = False
        try:
            while True:
                event = self._wait(waiter.inbox)
                if type(event) is Item:
                    assert isinstance(event, Item)
                    yield event.value
                    self._ack(sid, 0, item=True)
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

    def _ack(self, sid: int, consumed: int, *, item: bool = False) -> None:
        """Credit ``consumed`` bytes of one DATA frame, or (``item``) the oldest ITEM."""
        with self._write_lock:
            with self._state_lock:
                conn = self.conn
                data = conn.ack_item(sid) if item else conn.ack_data(sid, consumed, 1)
            if data:
                with contextlib.suppress(TetherError):
                    self._transmit([data])

    @contextlib.contextmanager
    def open_stream(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[ClientStream]:
        opening = _Opening()
        try:
            self._open(opening, OpenStream, node, method, args, kwargs)
        except BaseException:
            self._abandon(opening)
            raise
        sid, waiter = opening.sid, opening.waiter
        stream = ClientStream(self, sid, waiter)
        try:
            event = self._wait(waiter.inbox)
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

    def send(self, data: bytes) -> None:
        """Send bytes, blocking while the peer's window is full."""
        if self._eof_sent:
            raise ConnectFailed("send() after send_eof()")
        view = memoryview(data)
        owner = self._owner
        conn = owner.conn
        waiter = self._waiter
        while view:
            while conn.send_window(self._sid) <= 0:
                owner._check_open()
                if not conn.is_live(self._sid):
                    raise CallCancelled("the stream was closed by the peer")
                event = owner._wait(waiter.credit)
                waiter.credit_signalled = False  # before looking at the window again
                if isinstance(event, BaseException):
                    owner._raise_if_error(event)
            chunk = view[: self._limit]
            owner._send_data(Data(self._sid, chunk))
            view = view[self._limit :]

    def send_eof(self) -> None:
        """Half-close: the driver's side sees end of input; receiving goes on."""
        if not self._eof_sent:
            self._eof_sent = True
            self._owner._send(Data(self._sid, b"", end=True))

    def receive(self) -> bytes:
        """Next chunk of bytes; ``b""`` once the driver ended its side."""
        if self._eof_received:
            return b""
        event = self._owner._wait(self._waiter.inbox)
        if type(event) is Data:
            assert isinstance(event, Data)
            if event.end:
                self._eof_received = True
            if event.data:
                self._owner._ack(self._sid, len(event.data))
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
