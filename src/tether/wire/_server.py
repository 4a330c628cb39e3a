"""Serving a session over one connection, on asyncio.

``ServerProtocol`` is the thin I/O loop around a server-role :class:`Connection`: bytes from
the transport go in, events come out and are dispatched; each call or byte stream runs as its
own task, owned by the protocol and cancelled when the connection ends. What a call does is
the session's :class:`~tether.wire.CallHandler`'s business (``tether.driver.CallDispatcher``
for a driver tree): the wire only carries its answer, or the error the handler maps a
failure to. A protocol violation closes this connection only.

Sessions are resolved at the handshake by a ``SessionResolver`` (the exporter checks the token
there and picks or creates the session); nothing driver-related runs before it accepts. Until
then the connection reads into a small buffer, and a client that has not sent its Hello
``handshake_timeout`` seconds after the accept is dropped (however it trickles bytes).

Back-pressure: whatever the peer does not read waits here, bounded. Stream data and items
wait for the transport (and the stream's window); the other frames (results, errors, pongs)
queue behind a paused transport, a pong only once however many pings came; when the queue
and the transport's buffer together pass ``max_backlog`` bytes, the peer is sent
``GOAWAY backlog`` and dropped. At most ``max_streams`` calls run per connection; the ones
past that get an error at once.

Keepalive, the handshake deadline and the PING-flood limit are :mod:`._liveness`'s; the
per-frame path only stamps ``last_received``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol

from tether.errors import (
    AuthenticationFailed,
    CallError,
    ConfigError,
    DriverError,
    LocalProtocolError,
    ProtocolError,
    SessionLost,
    goaway_code,
)

from ._bytestreams import ByteStreamServing, ServedStream, _Inbox
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
from ._frames import encode_event
from ._handler import CallHandler, short_error, shorten
from ._liveness import LivenessServing
from ._state import ConnState, Role

__all__ = [
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_READ_BUFFER",
    "ServerProtocol",
    "ServerSession",
    "SessionResolver",
]

log = logging.getLogger("tether.wire.server")


class ServerSession(Protocol):
    """A session a connection serves: its call handler plus bookkeeping."""

    @property
    def handler(self) -> CallHandler: ...

    def attach(self, protocol: ServerProtocol) -> None: ...

    def detach(self, protocol: ServerProtocol) -> None: ...


#: Called with the client's Hello meta; returns the session and extra Hello meta for the reply,
#: or raises AuthenticationFailed (or SessionLost: the Hello names a session that is gone).
SessionResolver = Callable[[dict[str, Any]], Awaitable[tuple[ServerSession, dict[str, Any]]]]

#: The receive buffer once the Hello is accepted (``ServerProtocol(read_buffer=...)``).
DEFAULT_READ_BUFFER = 1 << 18
#: The receive buffer until the Hello is accepted (a Hello is small; larger frames of an
#: unauthenticated peer are assembled by the decoder, up to its 64 KiB handshake limit).
_HANDSHAKE_READ = 4 << 10
#: Bytes a peer may leave unread (queued frames plus the transport's buffer) before it goes.
DEFAULT_MAX_BACKLOG = 32 << 20
#: Calls and byte streams that may run at once on one connection.
DEFAULT_MAX_STREAMS = 1024
#: What a queued frame costs beyond its bytes (the task and the objects around it).
_QUEUED_OVERHEAD = 64
#: Tasks may start eagerly (``asyncio.Task(eager_start=True)``, Python 3.12+).
_EAGER = sys.version_info >= (3, 12)


def _start_task(
    loop: asyncio.AbstractEventLoop, runner: Coroutine[Any, Any, None], *, eager: bool
) -> asyncio.Task[None]:
    """``runner`` as a task; on Python 3.12+ an ``eager`` one runs at once, until it first
    suspends: a call that completes without waiting then costs no extra turn of the loop."""
    if eager and _EAGER and loop.get_task_factory() is None:
        return asyncio.Task(runner, loop=loop, eager_start=True)  # type: ignore[call-arg]
    return loop.create_task(runner)


class ServerProtocol(ByteStreamServing, LivenessServing, asyncio.BufferedProtocol):
    """One server connection. Create one per accepted transport.

    Args:
        resolve: authenticates the client's Hello and returns its session.
        window: the receive window granted per stream (default ``DEFAULT_WINDOW``).
        keepalive: seconds without any frame from the client before the server sends a PING;
            ``None`` (the default) disables keepalive.
        keepalive_timeout: seconds to wait for any frame after that PING before the client
            is declared dead: the server sends ``GOAWAY keepalive_timeout``, closes the
            transport and cancels the connection's tasks. Defaults to ``keepalive``.
        handshake_timeout: seconds from the accept by which the client's Hello must have
            arrived, else ``GOAWAY handshake_timeout`` and close (``None``: no deadline).
        max_backlog: bytes the client may leave unread before ``GOAWAY backlog`` and close.
        max_streams: calls and byte streams that may run at once; more get an error.
        read_buffer: bytes one read may take from the transport once the Hello is accepted
            (the buffer is allocated per connection; ``serve()``'s one connection uses more).

    Raises:
        ConfigError: a time-out or limit is not a positive number.
    """

    def __init__(
        self,
        resolve: SessionResolver,
        *,
        window: int | None = None,
        keepalive: float | None = None,
        keepalive_timeout: float | None = None,
        handshake_timeout: float | None = None,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        max_streams: int = DEFAULT_MAX_STREAMS,
        read_buffer: int = DEFAULT_READ_BUFFER,
    ) -> None:
        for name, value, unit in (
            ("keepalive", keepalive, "seconds or None"),
            ("keepalive_timeout", keepalive_timeout, "seconds or None"),
            ("handshake_timeout", handshake_timeout, "seconds or None"),
            ("max_backlog", max_backlog, "bytes"),
            ("max_streams", max_streams, "count"),
            ("read_buffer", read_buffer, "bytes"),
        ):
            if value is not None and not value > 0:
                raise ConfigError(f"ServerProtocol: {name} must be positive {unit}, got {value!r}")
        kwargs = {"window": window} if window else {}
        self.conn = Connection(Role.SERVER, **kwargs)
        self._view = memoryview(bytearray(_HANDSHAKE_READ))
        self._resolve = resolve
        self._transport: asyncio.Transport | None = None
        self._session: ServerSession | None = None
        self._handler: CallHandler | None = None
        #: One record per live call or byte stream: its task, inbox and credit waiter.
        self._streams: dict[int, ServedStream] = {}
        #: Inboxes holding views of the receive buffer, until the end of this _feed.
        self._lent: list[_Inbox] = []
        #: Inboxes with payloads for their driver's ``send_now``, until the end of this _feed.
        self._direct: list[_Inbox] = []
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._paused = False
        #: Frames waiting for a paused transport (results, errors), and their cost in bytes.
        self._queued: deque[bytes] = deque()
        self._queued_size = 0
        self._pong_owed: bytes | None = None
        self._max_backlog = max_backlog
        self._max_streams = max_streams
        self._read_buffer = read_buffer
        self._handshake: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = asyncio.Event()
        #: Loop time (``loop.time()``) at which the last bytes arrived from the client.
        self.last_received = 0.0
        self._init_liveness(keepalive, keepalive_timeout, handshake_timeout)

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        # Kept: asyncio.get_running_loop() costs a getpid() system call on every use.
        self._loop = loop = asyncio.get_running_loop()
        self.last_received = loop.time()
        self._arm_liveness()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        # The receive buffer is lent to the decoder, not copied: _feed copies the DATA
        # payloads it keeps (one copy per read, joined per stream) before uvloop reuses it.
        self._feed(self._view[:nbytes], borrowed=True)

    def eof_received(self) -> bool:
        self._feed(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._teardown()

    def pause_writing(self) -> None:
        self._paused = True
        self._can_write.clear()

    def resume_writing(self) -> None:
        # Queued frames first, in order; a write may pause the transport again at once.
        self._paused = False
        if self.closed.is_set():  # a closing transport draining its buffer
            self._can_write.set()
            return
        while self._queued and not self._paused:
            data = self._queued.popleft()
            self._queued_size -= len(data) + _QUEUED_OVERHEAD
            self._write_raw(data)
        if self._pong_owed is not None and not self._paused:
            payload, self._pong_owed = self._pong_owed, None
            self._write(Pong(payload))
        if not self._paused:
            self._can_write.set()

    # -- events -------------------------------------------------------------------------------

    def _feed(self, data: bytes | memoryview, borrowed: bool = False) -> None:
        conn = self.conn
        if conn.state is ConnState.ERROR or conn.state is ConnState.CLOSED:
            return
        assert self._loop is not None
        self.last_received = self._loop.time()
        try:
            conn.receive_data(data, borrowed=borrowed)
            dispatch = self._dispatch
            while (event := conn.next_event()) is not NEED_DATA:
                dispatch(event)  # type: ignore[arg-type]
            if self._direct or self._lent:
                self._end_of_read()
        except ProtocolError as exc:
            for inbox in self._direct:
                inbox.direct_items.clear()
            self._direct.clear()
            if self.closed.is_set():
                return  # dropped during this read (a flood, its backlog): already said why
            log.warning("protocol error from %s: %s", self.peer, shorten(str(exc), 200))
            self._abort("protocol_error", shorten(str(exc), 200))

    def _dispatch(self, event: Event) -> None:
        cls = type(event)
        if cls is Call or cls is OpenStream:
            assert isinstance(event, StreamOpening)
            if self._handler is None:
                return
            sid = event.stream_id
            if len(self._streams) >= self._max_streams:
                count = len(self._streams)
                error = CallError(f"too many calls at once on this connection ({count})")
                self._write_answer(Error(sid, error.to_wire()))
                return
            assert self._loop is not None
            record = self._streams[sid] = ServedStream()
            if cls is Call:
                runner = self._run_call(event)  # type: ignore[arg-type]
            else:
                record.inbox = _Inbox(self._loop, sid)
                runner = self._run_stream(event, record.inbox)  # type: ignore[arg-type]
            # A real task even for calls that finish at once (driver code may use TaskGroup or
            # asyncio.timeout); the runners forget their record themselves (``finally``).
            record.task = _start_task(self._loop, runner, eager=cls is Call)
        elif cls is Data:
            self._on_data(event)  # type: ignore[arg-type]
        elif cls is WindowUpdate or cls is Cancel:
            found = self._streams.get(event.stream_id)  # type: ignore[attr-defined]
            if found is not None and cls is Cancel and found.task is not None:
                found.task.cancel()
            elif found is not None and found.credit is not None:
                found.credit.set()
        elif cls is Ping:
            assert isinstance(event, Ping)
            if self._ping_flood():
                return
            if self._can_write.is_set():
                self._write(Pong(event.payload))
            else:
                self._pong_owed = event.payload  # one answer for all pings while paused
        elif cls is Hello:
            assert isinstance(event, Hello) and self._loop is not None
            self._handshake = self._loop.create_task(self._accept(event))
        elif cls is GoAway or cls is ConnectionClosed:
            self._close()

    async def _accept(self, hello: Hello) -> None:
        try:
            session, meta = await self._resolve(dict(hello.meta))
        except (AuthenticationFailed, SessionLost) as exc:
            log.warning("rejected connection from %s: %s", self.peer, exc)
            self._abort(goaway_code(exc) or "unauthenticated", str(exc))
            return
        except Exception as exc:
            log.exception("could not open a session for %s", self.peer)
            self._abort("session_failed", shorten(f"{type(exc).__name__}: {exc}", 500))
            return
        if self.conn.state is not ConnState.HELLO_RECEIVED:
            return
        self._session = session
        self._handler = session.handler
        # Not during a read (this is a task): no view of the small buffer is lent now.
        self._view = memoryview(bytearray(self._read_buffer))
        session.attach(self)
        self._write(self.conn.hello(**meta))

    # -- calls --------------------------------------------------------------------------------

    async def _run_call(self, event: Call) -> None:
        sid = event.stream_id
        handler = self._handler
        assert handler is not None
        try:
            answer = handler.call(event.node, event.method, event.args, event.kwargs)
            if hasattr(answer, "__anext__"):
                async for item in answer:  # type: ignore[union-attr]
                    await self._send_item(sid, item)
                self._write_answer(Result(sid, None))
            else:
                value = await answer
                try:
                    self._write_answer(Result(sid, value))
                except LocalProtocolError as exc:
                    raise DriverError(f"result cannot be sent: {exc}") from None
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail_call(sid, event.method, exc)
        finally:
            self._finish_stream(sid)

    def _finish_stream(self, sid: int) -> None:
        self._streams.pop(sid, None)

    async def _send_item(self, sid: int, item: Any) -> None:
        await self._wait_writable(sid)
        try:
            self._write(Item(sid, item))
        except LocalProtocolError as exc:
            raise DriverError(f"item cannot be sent: {exc}", remote_type="TypeError") from exc

    def _fail_call(self, sid: int, method: str, exc: BaseException) -> None:
        """Answer a failed call with the handler's error, or a short one if that cannot go."""
        if not isinstance(exc, Exception):
            raise exc
        if self.closed.is_set() or self.conn.state is ConnState.ERROR or not self.conn.is_live(sid):
            return
        try:
            assert self._handler is not None
            error = self._handler.wire_error(method, exc)
        except Exception:
            log.exception("the call handler could not map an error of %s", shorten(method, 100))
            error = DriverError("internal error", remote_type=type(exc).__name__)
        try:
            self._write_answer(Error(sid, short_error(error)))
        except LocalProtocolError:
            # Unencodable details, or a peer with a tiny frame limit: the code alone goes.
            short = {"code": error.code, "message": shorten(error.message, 100)}
            self._write_answer(Error(sid, short))

    # -- output and teardown ------------------------------------------------------------------

    def _write(self, event: Event) -> None:
        self._write_raw(self.conn.send(event))

    def _write_raw(self, data: bytes) -> None:
        transport = self._transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)

    def _write_answer(self, event: Event) -> None:
        """Write a result or an error, or queue it behind a paused transport (bounded)."""
        data = self.conn.send(event)
        if not data:
            return
        if self._can_write.is_set():
            self._write_raw(data)
            return
        self._queued.append(data)
        self._queued_size += len(data) + _QUEUED_OVERHEAD
        transport = self._transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        if self._queued_size + buffered > self._max_backlog:
            log.warning(
                "%s leaves %d bytes unread: dropping it", self.peer, self._queued_size + buffered
            )
            self._abort("backlog", f"more than {self._max_backlog} bytes left unread")

    @property
    def peer(self) -> str:
        if self._transport is None:
            return "?"
        return str(self._transport.get_extra_info("peername") or "local")

    def _abort(self, code: str, message: str) -> None:
        """The connection is broken (protocol error, refused handshake): say why and close."""
        self._say_goodbye(code, message)
        self.conn.fail()
        self._teardown()

    def _say_goodbye(self, code: str, message: str) -> None:
        # GOAWAY is written raw: it is the last frame, and it must go out even in states where
        # the table would refuse it (START, or after a protocol error).
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if transport.get_write_buffer_size() > self._max_backlog:
                transport.abort()  # the peer reads nothing: a goodbye would only queue
                return
            transport.write(encode_event(GoAway(code, message)))
            transport.close()

    def _close(self) -> None:
        """The client said goodbye or went away: close without a word."""
        if self._transport is not None:
            self._transport.close()
        self._teardown()

    def close(self, code: str = "normal", message: str = "") -> None:
        """Send ``GOAWAY [code, message]`` and close; calls in flight are cancelled."""
        self._say_goodbye(code, message)
        self._teardown()

    def _teardown(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        self._disarm_liveness()
        self._queued.clear()
        self._queued_size = 0
        if self._handshake is not None:
            self._handshake.cancel()
        for record in list(self._streams.values()):
            if record.task is not None:
                record.task.cancel()
            if record.credit is not None:
                record.credit.set()
        self._can_write.set()  # writers wake, see the closed transport and end
        if self._session is not None:
            self._session.detach(self)
