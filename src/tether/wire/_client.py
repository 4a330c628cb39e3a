"""The blocking client connection: sync calls without an event-loop hop.

Theory of operation (leader/followers). Callers send from their own thread (whole frames
under a write lock, so frames never interleave), then wait for their stream's events. Whoever
waits and finds the transport unread takes the *read lock* and reads it itself (the leader),
feeding the sans-IO :class:`Connection` and handing every event to its stream's waiter, until
its own event arrives. Releasing the read lock hands the turn to another waiting thread. A
lone sync call therefore costs one round trip and no thread switch at all.

The connection talks to a :class:`~tether.wire.ClientTransport` (one send path, one receive
path); how a read waits (blocking, or polling first: ``tether.wire._spinning``) is the
transport's business. Its lifecycle is ``ClientState`` with one transition table
(``_state.CLIENT_TRANSITIONS``).

An idle thread reads whatever arrived only while nobody waits, so pings are answered, a
GoAway is seen and a dead server is noticed between calls.

Keepalive: when nothing was received for ``keepalive`` seconds the reader sends a PING; if
nothing arrives for ``2 * keepalive`` more, the connection is declared dead and every call in
flight fails with :class:`~tether.errors.ConnectionLost` (so within about ``3 * keepalive``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

from tether.errors import (
    ConnectFailed,
    ConnectionLost,
    LifecycleError,
    ProtocolError,
    TetherError,
    error_from_goaway,
)

from ._clientkeepalive import ClientKeepalive
from ._clientstream import YOUR_TURN, ClientStream, Opening, Slot, Waiter, raise_if_error
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
    StreamOpening,
    WindowUpdate,
)
from ._spinning import DEFAULT_SPIN, SpinningTransport
from ._state import CLIENT_TRANSITIONS, ClientEvent, ClientState, ConnState, Role
from ._tls import TLSChannel
from ._transports import ClientTransport, SocketTransport

__all__ = ["DEFAULT_SPIN", "ClientConnection", "ClientStream"]

log = logging.getLogger("tether.wire.client")


class ClientConnection(ClientKeepalive):
    """A client connection over a transport; implements ``CallTarget``.

    Args:
        transport: a :class:`~tether.wire.ClientTransport`, or a connected stream socket
            (unix, TCP, or a :class:`TLSChannel`), which is wrapped in one.
        meta: extra Hello metadata (token, session id, client name).
        keepalive: seconds of silence before a PING; ``None`` disables keepalive.
        handshake_timeout: seconds to wait for the server's Hello (``None``: no limit).
        spin: for a socket: seconds a read polls before it blocks (0: it blocks at once;
            see ``tether.wire._spinning``).

    Raises:
        AuthenticationFailed: the server rejected our credentials.
        SessionLost, LeaseEnded: the server refused because the session or lease is gone
            (see :func:`tether.errors.error_from_goaway`).
        ConnectFailed: the server closed or sent garbage during the handshake.
    """

    def __init__(
        self,
        transport: ClientTransport | socket.socket | TLSChannel,
        *,
        meta: dict[str, Any] | None = None,
        keepalive: float | None = 10.0,
        handshake_timeout: float | None = 10.0,
        spin: float = DEFAULT_SPIN,
    ) -> None:
        if not isinstance(transport, ClientTransport):
            transport = (
                SpinningTransport(transport, spin) if spin > 0 else SocketTransport(transport)
            )
        self._transport = transport
        self.state = ClientState.HANDSHAKE
        self.conn = Connection(Role.CLIENT)
        self._state_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._waiters: dict[int, Waiter] = {}
        self._error: BaseException | None = None
        self._keepalive = keepalive
        self._pinged_at: float | None = None
        self._received_at = time.monotonic()
        self._stopping = threading.Event()
        self.server_meta = self._handshake(meta or {}, handshake_timeout)
        self._reader: threading.Thread | None = None
        if keepalive is not None:
            self._reader = threading.Thread(
                target=self._idle_loop, name="tether-keepalive", daemon=True
            )
            self._reader.start()

    def _advance(self, event: ClientEvent) -> None:
        new = CLIENT_TRANSITIONS.get((self.state, event))
        if new is None:
            raise LifecycleError(
                f"client connection: {event.value} is not allowed in state {self.state.name}"
            )
        self.state = new

    # -- handshake ----------------------------------------------------------------------------

    def _handshake(self, meta: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        try:
            event = self._first_event(meta, timeout)
        except (OSError, ProtocolError, ConnectionLost) as exc:
            self._refused()
            raise ConnectFailed(f"handshake failed: {exc}") from exc
        except BaseException:
            self._refused()
            raise
        if isinstance(event, Hello):
            self._advance(ClientEvent.ACCEPTED)
            return dict(event.meta)
        self._refused()
        # Decided outside the socket-error mapping above: AuthenticationFailed is an OSError
        # (via ConnectionError), and an exporter's rejection is not a socket error.
        if isinstance(event, GoAway):
            raise error_from_goaway(event.code, event.message)
        raise ConnectFailed("server closed the connection during the handshake")

    def _refused(self) -> None:
        self._advance(ClientEvent.FAILED)
        self._transport.close()

    def _first_event(self, meta: dict[str, Any], timeout: float | None) -> Event:
        """Send our Hello and read until the server's first event (Hello, GoAway, closed)."""
        self._transport.send([self.conn.send(self.conn.hello(**meta))], [])
        while True:
            self.conn.receive_data(self._transport.receive(timeout, soon=False))
            event = self.conn.next_event()
            if event is not NEED_DATA:
                assert isinstance(event, Event)
                return event

    # -- reading (leader/followers) ------------------------------------------------------------

    def _wait(self, slot: Slot) -> Any:
        """Next event for ``slot``; reads the transport itself when nobody else does."""
        events = slot.events
        while True:
            if not events.empty():  # only this thread takes from its own queue
                event = events.get_nowait()
                if event is not YOUR_TURN:
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
                if event is not YOUR_TURN:
                    return event
            finally:
                slot.waiting = False

    def _hand_off(self) -> None:
        """After releasing the read lock: wake one thread still waiting, to read next."""
        for waiter in list(self._waiters.values()):
            for slot in (waiter.inbox, waiter.credit):
                if slot.waiting and slot.events.empty():
                    slot.events.put(YOUR_TURN)
                    return

    def _read_once(self, *, blocking: bool) -> None:
        """Read once and dispatch (read lock held). Failures fail every waiter."""
        if self._error is not None:
            return
        try:
            try:
                if blocking:
                    data = self._transport.receive(self._keepalive)
                else:
                    nowait = self._transport.receive_nowait()
                    if nowait is None:
                        return
                    data = nowait
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
                while (event := self.conn.next_event()) is not NEED_DATA:
                    events.append(event)  # type: ignore[arg-type]
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
            closed = self.state is ClientState.CLOSED
            error = ConnectionLost(
                "the connection was closed" if closed else f"connection lost: {exc}"
            )
            error.__cause__ = exc
            self._fail_all(error)

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
            waiter.signal_credit()
            return
        waiter.inbox.events.put(event)
        if cls is Error or cls is Result:
            waiter.signal_credit()  # the stream ended: a blocked sender must see it

    def _fail_all(self, error: BaseException) -> None:
        with self._state_lock:
            first = self._error is None
            if first:
                self._error = error
            self._advance(ClientEvent.FAILED)
            waiters = list(self._waiters.values())
        if first:
            self._transport.shutdown()  # wakes a sender blocked on a peer that reads no more
        for waiter in waiters:
            waiter.inbox.events.put(error)
            waiter.credit.events.put(error)

    # -- sending (one path: whole frames through the transport, under the write lock) ---------

    def _transmit(self, parts: list[Any], sent: list[int] | None = None) -> None:
        """Write whole frames (write lock held); ``sent`` collects the count of every send.

        A frame cut in half would corrupt the stream, so an interruption (Ctrl-C) in the
        middle of one breaks the connection instead.
        """
        done: list[int] = [] if sent is None else sent
        first = len(done)
        try:
            self._transport.send(parts, done)
        except OSError as exc:
            raise ConnectionLost(f"connection lost: {exc}") from exc
        except BaseException:
            total = sum(len(part) for part in parts)
            if 0 < sum(done[first:]) < total:
                self._fail_all(ConnectionLost("interrupted in the middle of a frame"))
            raise

    def _send(self, event: Event) -> None:
        """Send one event; DATA goes out with header and payload unjoined (no copy)."""
        with self._write_lock:
            with self._state_lock:
                self._check_open()
                if type(event) is Data:
                    parts = self.conn.send_parts(event)
                else:
                    data = self.conn.send(event)
                    parts = [data] if data else []
            if parts:
                self._transmit(parts)

    def _open(
        self,
        opening: Opening,
        cls: type[StreamOpening],
        node: str,
        method: str,
        args: list[Any],
        kwargs: dict[str, Any],
    ) -> None:
        """Open a stream, recording each step in ``opening`` for :meth:`_abandon`."""
        with self._write_lock:
            with self._state_lock:
                self._check_open()
                if self.conn.state is ConnState.CLOSING:  # the server said GOAWAY: no new call
                    raise ConnectionLost("the server is closing the connection")
                opening.sid = sid = self.conn.next_stream_id()
                data = self.conn.send(cls(sid, node, method, args, kwargs))
                self._waiters[sid] = opening.waiter
            opening.size = len(data)
            self._transmit([data], opening.sent)

    def _abandon(self, opening: Opening) -> None:
        """The caller gave up (an error, Ctrl-C) at any point of opening or waiting."""
        sent = sum(opening.sent)
        if sent and sent == opening.size:
            self._cancel(opening.sid)  # the frame reached the exporter: cancel it there
        else:
            self._forget(opening.sid)

    def _forget(self, sid: int) -> None:
        self._waiters.pop(sid, None)

    def _check_open(self) -> None:
        state = self.state
        if state is ClientState.OPEN:
            return
        if state is ClientState.BROKEN and self._error is not None:
            raise ConnectionLost(str(self._error)) from self._error
        raise ConnectionLost(f"the connection is {state.name.lower()}")

    def _cancel(self, sid: int) -> None:
        self._waiters.pop(sid, None)
        with contextlib.suppress(TetherError, OSError):
            self._send(Cancel(sid))

    def _ack(self, sid: int, consumed: int, *, item: bool = False) -> None:
        """Credit ``consumed`` bytes of one DATA frame, or (``item``) the oldest ITEM."""
        with self._write_lock:
            with self._state_lock:
                conn = self.conn
                data = conn.ack_item(sid) if item else conn.ack_data(sid, consumed, 1)
            if data:
                with contextlib.suppress(TetherError):
                    self._transmit([data])

    # -- CallTarget ---------------------------------------------------------------------------

    def call(self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        opening = Opening()
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
        raise_if_error(event)
        raise ConnectionLost(f"unexpected {type(event).__name__} for a unary call")

    def streaming_call(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        opening = Opening()
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
                finished = True
                if type(event) is Result:
                    return
                raise_if_error(event)
        finally:
            self._waiters.pop(sid, None)
            if not finished:
                self._cancel(sid)

    @contextlib.contextmanager
    def open_stream(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Iterator[ClientStream]:
        opening = Opening()
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
                raise_if_error(event)
            yield stream
        except BaseException:
            stream.abort()
            raise
        stream.finish()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.state is ClientState.OPEN and self.conn.state is not ConnState.CLOSING

    def close(self) -> None:
        """Say goodbye and close the transport; calls in flight fail with ConnectionLost."""
        if self.state is ClientState.CLOSED:
            return
        with contextlib.suppress(TetherError, OSError):
            self._send(GoAway())
        with self._state_lock:
            self._advance(ClientEvent.CLOSE)
        self._stopping.set()
        self._transport.shutdown()
        if self._reader is not None and threading.current_thread() is not self._reader:
            self._reader.join()
        self._transport.close()
        self._fail_all(ConnectionLost("the connection was closed"))

    def __enter__(self) -> ClientConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
