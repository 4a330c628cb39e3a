"""Serving a driver tree over one connection, on asyncio.

``ServerProtocol`` is the thin I/O loop around a server-role :class:`Connection`: bytes from
the transport go in, events come out and are dispatched; each call or byte stream runs as its
own task, owned by the protocol and cancelled when the connection ends. Errors from drivers
become ERROR frames on that call only; a protocol violation closes this connection only.

Sessions are resolved at the handshake by a ``SessionResolver`` (the exporter checks the token
there and picks or creates the session); nothing driver-related runs before it accepts.

Keepalive is one timer per connection (``loop.call_at``), never touched on the per-frame path:
``_feed`` only stamps ``last_received``, and the timer, when it fires, works out from that
stamp whether to re-arm, PING, or give up on the client.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from tether.driver import Driver, DriverHost, MethodKind
from tether.errors import (
    AuthenticationFailed,
    CallError,
    ConfigError,
    DriverError,
    DriverNotImplemented,
    DriverTimeout,
    LocalProtocolError,
    MethodNotFound,
    ProtocolError,
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
from ._frames import encode_event
from ._state import ConnState, Role

__all__ = ["AsyncByteStream", "ServerProtocol", "ServerSession", "SessionResolver"]

log = logging.getLogger("tether.wire.server")


class AsyncByteStream(Protocol):
    """What an ``export_stream`` method yields: ``receive()`` returns ``b""`` at EOF."""

    async def send(self, data: bytes) -> None: ...

    async def receive(self) -> bytes: ...


class ServerSession(Protocol):
    """A session a connection serves: a started driver host plus bookkeeping."""

    host: DriverHost

    def attach(self, protocol: ServerProtocol) -> None: ...

    def detach(self, protocol: ServerProtocol) -> None: ...


#: Called with the client's Hello meta; returns the session and extra Hello meta for the reply,
#: or raises AuthenticationFailed.
SessionResolver = Callable[[dict[str, Any]], Awaitable[tuple[ServerSession, dict[str, Any]]]]


_READ_CHUNK = 1 << 18
#: Payloads at least this large go to a byte-stream driver as they are, not joined.
_JOIN_BELOW = 64 << 10
_PING_PAYLOAD = b"tether\0\0"


class ServerProtocol(asyncio.BufferedProtocol):
    """One server connection. Create one per accepted transport.

    Args:
        resolve: authenticates the client's Hello and returns its session.
        window: the receive window granted per stream (default ``DEFAULT_WINDOW``).
        keepalive: seconds without any frame from the client before the server sends a PING;
            ``None`` (the default) disables keepalive.
        keepalive_timeout: seconds to wait for any frame after that PING before the client
            is declared dead: the server sends ``GOAWAY keepalive_timeout``, closes the
            transport and cancels the connection's tasks. Defaults to ``keepalive``. A dead
            or silent client is therefore dropped within ``keepalive + keepalive_timeout``;
            one that never sends its Hello is dropped after the same silence.

    Raises:
        ConfigError: ``keepalive`` or ``keepalive_timeout`` is not a positive number.
    """

    def __init__(
        self,
        resolve: SessionResolver,
        *,
        window: int | None = None,
        keepalive: float | None = None,
        keepalive_timeout: float | None = None,
    ) -> None:
        for name, value in (("keepalive", keepalive), ("keepalive_timeout", keepalive_timeout)):
            if value is not None and not value > 0:
                raise ConfigError(
                    f"ServerProtocol: {name} must be positive seconds or None, got {value!r}"
                )
        kwargs = {"window": window} if window else {}
        self.conn = Connection(Role.SERVER, **kwargs)
        self._view = memoryview(bytearray(_READ_CHUNK))
        self._resolve = resolve
        self._transport: asyncio.Transport | None = None
        self._session: ServerSession | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._inbound: dict[int, _Inbox] = {}
        #: Inboxes holding views of the receive buffer, until the end of this _feed.
        self._lent: list[_Inbox] = []
        #: Inboxes with payloads for their driver's ``send_now``, until the end of this _feed.
        self._direct: list[_Inbox] = []
        self._window_waiters: dict[int, asyncio.Event] = {}
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._handshake: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = asyncio.Event()
        #: Loop time (``loop.time()``) at which the last bytes arrived from the client.
        self.last_received = 0.0
        self._keepalive = keepalive
        self._keepalive_timeout = keepalive_timeout if keepalive_timeout else keepalive
        self._keepalive_timer: asyncio.TimerHandle | None = None
        #: Loop time of the PING (or the missed Hello) we are waiting on an answer to.
        self._probe_at: float | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        # Kept: asyncio.get_running_loop() costs a getpid() system call on every use.
        self._loop = loop = asyncio.get_running_loop()
        self.last_received = loop.time()
        if self._keepalive is not None:
            self._keepalive_timer = loop.call_at(
                self.last_received + self._keepalive, self._keepalive_check
            )

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
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- keepalive ----------------------------------------------------------------------------

    def _keepalive_check(self) -> None:
        """Timer callback: re-arm while the client talks, PING when it is silent, then give up."""
        assert self._keepalive is not None and self._keepalive_timeout is not None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        if self._probe_at is not None and self.last_received < self._probe_at:
            # Waiting on an answer since _probe_at: nothing at all has arrived since then.
            deadline = self._probe_at + self._keepalive_timeout
            if now >= deadline:
                silent = now - self.last_received
                log.warning("no frame from %s for %.1f s: closing", self.peer, silent)
                self._keepalive_timer = None
                self.close("keepalive_timeout", f"no frame from the client for {silent:.1f} s")
                return
            # Look again within one interval: an answer restarts the interval from its arrival.
            deadline = min(deadline, now + self._keepalive)
        else:
            self._probe_at = None
            deadline = self.last_received + self._keepalive
            if now >= deadline:
                state = self.conn.state
                if state is ConnState.HELLO_RECEIVED:
                    deadline = now + self._keepalive  # our resolver is busy, not the client
                else:
                    self._probe_at = now
                    deadline = now + min(self._keepalive, self._keepalive_timeout)
                    if state is ConnState.OPEN or state is ConnState.CLOSING:
                        self._write(Ping(_PING_PAYLOAD))
                    # In START the client owes us its Hello; we cannot PING before it.
        self._keepalive_timer = loop.call_at(deadline, self._keepalive_check)

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
            if self._direct:
                for inbox in self._direct:
                    self._flush_direct(inbox)
                self._direct.clear()
            if self._lent:
                for inbox in self._lent:
                    inbox.keep()
                self._lent.clear()
        except ProtocolError as exc:
            for inbox in self._direct:
                inbox.direct_items.clear()
            self._direct.clear()
            log.warning("protocol error from %s: %s", self.peer, exc)
            self._abort("protocol_error", str(exc))

    def _dispatch(self, event: Event) -> None:
        cls = type(event)
        if cls is Call or cls is OpenStream:
            assert isinstance(event, Call | OpenStream)
            if self._session is None:
                return
            runner = self._run_call if cls is Call else self._run_stream
            self._spawn(event.stream_id, runner(event))  # type: ignore[arg-type]
        elif cls is Data:
            assert isinstance(event, Data)
            inbox = self._inbound.get(event.stream_id)
            data = event.data
            if inbox is None:
                return
            # The pump is idle and the driver can write without waiting: the payloads of this
            # read go to it at the end of _feed, in one write, without a copy or a task switch.
            if inbox.direct is not None and (inbox.direct_items or inbox.waiting):
                if not inbox.direct_items:
                    self._direct.append(inbox)
                inbox.direct_items.append(data)
                inbox.direct_end = event.end
                return
            # A view of the receive buffer is lent; one of a frame the decoder assembled in a
            # buffer of its own (a large frame) is ours to keep without a copy.
            lent = type(data) is memoryview and data.obj is self._view.obj
            if inbox.put(data, event.end, lent=lent):
                self._lent.append(inbox)
        elif cls is WindowUpdate:
            assert isinstance(event, WindowUpdate)
            waiter = self._window_waiters.get(event.stream_id)
            if waiter is not None:
                waiter.set()
        elif cls is Cancel:
            assert isinstance(event, Cancel)
            task = self._tasks.get(event.stream_id)
            if task is not None:
                task.cancel()
        elif cls is Ping:
            assert isinstance(event, Ping)
            self._write(Pong(event.payload))
        elif cls is Hello:
            assert isinstance(event, Hello)
            assert self._loop is not None
            self._handshake = self._loop.create_task(self._accept(event))
        elif cls is GoAway or cls is ConnectionClosed:
            self._close()

    def _flush_direct(self, inbox: _Inbox) -> None:
        """Hand the payloads gathered for an idle pump straight to the driver (see _dispatch)."""
        items, end = inbox.direct_items, inbox.direct_end
        inbox.direct_items, inbox.direct_end = [], False
        chunks = [item for item in items if item]
        assert inbox.direct is not None
        try:
            done = bool(chunks) and inbox.direct(chunks)
        except Exception:  # a driver's bug: its ``send`` (in the pump) reports it to the client
            log.exception("send_now of a byte stream failed")
            done = False
        if done:
            size = sum(len(chunk) for chunk in chunks) + HEADER_SIZE * len(chunks)
            ack = self.conn.ack_data(inbox.sid, size)
            if ack and self._transport is not None:
                self._transport.write(ack)
            chunks = []
        for chunk in chunks:
            lent = type(chunk) is memoryview and chunk.obj is self._view.obj
            if inbox.put(chunk, False, lent=lent):
                self._lent.append(inbox)
        if end:
            inbox.put(b"", True)

    async def _accept(self, hello: Hello) -> None:
        try:
            session, meta = await self._resolve(dict(hello.meta))
        except AuthenticationFailed as exc:
            log.warning("rejected connection from %s: %s", self.peer, exc)
            self._abort("unauthenticated", str(exc))
            return
        except Exception as exc:
            log.exception("could not open a session for %s", self.peer)
            self._abort("session_failed", f"{type(exc).__name__}: {exc}")
            return
        if self.conn.state is not ConnState.HELLO_RECEIVED:
            return
        self._session = session
        session.attach(self)
        self._write(self.conn.hello(**meta))

    # -- calls --------------------------------------------------------------------------------

    def _spawn(self, stream_id: int, coro: Coroutine[Any, Any, None]) -> None:
        # A real task even for calls that finish at once: driver code may use TaskGroup or
        # asyncio.timeout, which need a current task (so no hand-rolled eager start here).
        # The runners forget their task themselves (``finally``): a done callback would cost
        # the loop one more iteration per call.
        assert self._loop is not None
        self._tasks[stream_id] = self._loop.create_task(coro)

    def _method(self, event: Call | OpenStream) -> tuple[Driver, Any, Any]:
        assert self._session is not None
        driver = self._session.host.lookup(event.node)
        method = type(driver).exported().get(event.method)
        if method is None:
            raise MethodNotFound(
                f"{type(driver).__name__} has no exported method {event.method!r}",
                method=event.method,
            )
        bound = method.bind(event.args, event.kwargs)
        return driver, method, bound

    async def _run_call(self, event: Call) -> None:
        sid = event.stream_id
        try:
            driver, method, bound = self._method(event)
            if method.kind is MethodKind.BYTE_STREAM:
                raise MethodNotFound(f"{event.method!r} is a byte stream; open it with stream()")
            fn = getattr(driver, method.name)
            if method.kind is MethodKind.UNARY:
                if method.is_async:
                    value = await fn(*bound[0], **bound[1])
                else:
                    call = functools.partial(fn, *bound[0], **bound[1])
                    value = await self._loop.run_in_executor(None, call)  # type: ignore[union-attr]
                self._send_result(sid, value)
                return
            if method.is_async:
                async for item in fn(*bound[0], **bound[1]):
                    await self._send_item(sid, item)
            else:
                async for item in _iterate_in_thread(fn(*bound[0], **bound[1])):
                    await self._send_item(sid, item)
            self._write(Result(sid, None))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._fail_call(sid, event.method, exc)
        finally:
            self._tasks.pop(sid, None)
            if self._window_waiters:
                self._window_waiters.pop(sid, None)

    def _send_result(self, sid: int, value: Any) -> None:
        try:
            self._write(Result(sid, value))
        except LocalProtocolError as exc:
            self._write(Error(sid, DriverError(f"result cannot be sent: {exc}").to_wire()))

    async def _send_item(self, sid: int, item: Any) -> None:
        await self._wait_writable(sid)
        try:
            self._write(Item(sid, item))
        except LocalProtocolError as exc:
            raise DriverError(f"item cannot be sent: {exc}", remote_type="TypeError") from exc

    async def _wait_writable(self, sid: int) -> None:
        while self.conn.send_window(sid) <= 0:
            if not self.conn.is_live(sid):
                raise asyncio.CancelledError
            waiter = self._window_waiters.setdefault(sid, asyncio.Event())
            waiter.clear()
            await waiter.wait()
        if not self._can_write.is_set():
            await self._can_write.wait()

    def _fail_call(self, sid: int, method: str, exc: BaseException) -> None:
        if isinstance(exc, CallError):
            error = exc
        elif isinstance(exc, NotImplementedError):
            error = DriverNotImplemented(
                str(exc) or f"{method} is not implemented", remote_type="NotImplementedError"
            )
        elif isinstance(exc, TimeoutError):
            error = DriverTimeout(str(exc) or f"{method} timed out", remote_type="TimeoutError")
        elif isinstance(exc, Exception):
            log.info("driver method %s raised", method, exc_info=exc)
            kind = type(exc)
            error = DriverError(str(exc), remote_type=f"{kind.__module__}.{kind.__qualname__}")
        else:
            raise exc
        if self.conn.is_live(sid):
            self._write(Error(sid, error.to_wire()))

    async def _run_stream(self, event: OpenStream) -> None:
        sid = event.stream_id
        assert self._loop is not None
        inbox = self._inbound[sid] = _Inbox(self._loop, sid)
        try:
            driver, method, bound = self._method(event)
            if method.kind is not MethodKind.BYTE_STREAM:
                raise MethodNotFound(f"{event.method!r} is not a byte stream; call it instead")
            opener: AbstractAsyncContextManager[AsyncByteStream] = getattr(driver, method.name)(
                *bound[0], **bound[1]
            )
            async with opener as stream:
                self._write(Result(sid, None))
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._pump_in(sid, inbox, stream))
                    group.create_task(self._pump_out(sid, stream))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            self._fail_call(sid, event.method, exc)
        finally:
            self._tasks.pop(sid, None)
            self._inbound.pop(sid, None)
            self._window_waiters.pop(sid, None)

    async def _pump_in(self, sid: int, inbox: _Inbox, stream: Any) -> None:
        # Everything that arrived since the last turn goes to the driver in one send: one
        # system call for the driver's socket instead of one per DATA frame. A lone payload
        # is a zero-copy view of a received chunk; streams that do not say they take buffers
        # (``accepts_buffers = True``) get plain bytes.
        as_bytes = not getattr(stream, "accepts_buffers", False)
        if not as_bytes:
            # ``send_now(data) -> bool``: write without waiting when the driver can, from
            # the receive path itself (see ``AsyncioStream.send_now``).
            inbox.direct = getattr(stream, "send_now", None)
        try:
            await self._pump(sid, inbox, stream, as_bytes)
        finally:
            inbox.direct = None

    async def _pump(self, sid: int, inbox: _Inbox, stream: Any, as_bytes: bool) -> None:
        while True:
            chunks, counted, eof = await inbox.take()
            if chunks:
                for data in _batches(chunks):
                    await stream.send(bytes(data) if as_bytes and type(data) is not bytes else data)
                ack = self.conn.ack_data(sid, counted)
                if ack and self._transport is not None:
                    self._transport.write(ack)
            if eof:
                send_eof = getattr(stream, "send_eof", None)
                if send_eof is not None:
                    await send_eof()
                return

    async def _pump_out(self, sid: int, stream: Any) -> None:
        limit = self.conn.peer_max_frame
        while True:
            chunk = await stream.receive()
            if not chunk:
                if self.conn.is_live(sid):
                    self._write(Data(sid, b"", end=True))
                return
            # A view of the chunk may wait in the transport's buffer: never of one the driver
            # could write again.
            view = memoryview(chunk if type(chunk) is bytes else bytes(chunk))
            for start in range(0, len(chunk), limit):
                await self._wait_writable(sid)
                # Header and payload go out unjoined: no copy of the payload.
                parts = self.conn.send_parts(Data(sid, view[start : start + limit]))
                transport = self._transport
                if parts and transport is not None and not transport.is_closing():
                    transport.writelines(parts)

    # -- output and teardown ------------------------------------------------------------------

    def _write(self, event: Event) -> None:
        data = self.conn.send(event)
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

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
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(encode_event(GoAway(code, message)))
            self._transport.close()

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
        if self._keepalive_timer is not None:
            self._keepalive_timer.cancel()
            self._keepalive_timer = None
        if self._handshake is not None:
            self._handshake.cancel()
        for task in list(self._tasks.values()):
            task.cancel()
        for waiter in self._window_waiters.values():
            waiter.set()
        if self._session is not None:
            self._session.detach(self)


_Buffer = bytes | bytearray | memoryview


class _Inbox:
    """The DATA payloads received on one byte stream, taken by its pump in batches.

    Payloads arrive as views of the protocol's receive buffer; :meth:`keep` (called before
    the buffer is reused) replaces the views that arrived since the last call with one
    ``bytes`` of them all: a single copy of the data, however many frames it came in. Large
    frames the decoder assembled in a buffer of their own are kept as they are.
    """

    __slots__ = (
        "_counted",
        "_end",
        "_items",
        "_kept",
        "_loop",
        "_waiter",
        "direct",
        "direct_end",
        "direct_items",
        "sid",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, sid: int) -> None:
        self._items: list[_Buffer] = []
        self._kept = 0  # _items[:_kept] are our own bytes; the rest are lent views
        self._counted = 0  # flow-control size of the payloads not yet taken
        self._end = False
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        #: The driver's ``send_now``, while the pump runs and the driver has one.
        self.direct: Callable[[list[_Buffer]], bool] | None = None
        #: Payloads (and whether the last ended the stream) for ``direct``, in this read.
        self.direct_items: list[_Buffer] = []
        self.direct_end = False
        self.sid = sid

    @property
    def waiting(self) -> bool:
        """The pump waits for payloads: nothing is held, nothing is being sent."""
        return self._waiter is not None

    def put(self, data: _Buffer, end: bool, *, lent: bool = True) -> bool:
        """Add a payload; True when the inbox starts holding lent views (call :meth:`keep`).

        A payload that is not ``lent`` stays as it is, unless lent views precede it (order).
        """
        starts_lending = False
        if data:
            items = self._items
            if not lent and self._kept == len(items):
                items.append(data)
                self._kept += 1
            else:
                starts_lending = self._kept == len(items)
                items.append(data)
            self._counted += len(data) + HEADER_SIZE
        self._end = self._end or end
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        return starts_lending

    def keep(self) -> None:
        """Copy the lent views into one ``bytes`` of our own."""
        items = self._items
        lent = items[self._kept :]
        if lent:
            items[self._kept :] = [bytes(lent[0]) if len(lent) == 1 else b"".join(lent)]
            self._kept = len(items)

    async def take(self) -> tuple[list[_Buffer], int, bool]:
        """Wait until something arrived; return the payloads, their flow-control size (for
        the WINDOW credit) and whether the peer ended its side."""
        while not self._items and not self._end:
            self._waiter = self._loop.create_future()
            await self._waiter
        items, counted = self._items, self._counted
        self._items, self._kept, self._counted = [], 0, 0
        return items, counted, self._end


def _batches(chunks: list[_Buffer]) -> list[_Buffer]:
    """Payloads for a driver's ``send``: small ones joined (one write for many frames),
    large ones as they are (joining megabytes would only copy them)."""
    if len(chunks) == 1:
        return chunks
    batches: list[_Buffer] = []
    small: list[_Buffer] = []
    for chunk in chunks:
        if len(chunk) < _JOIN_BELOW:
            small.append(chunk)
            continue
        if small:
            batches.append(small[0] if len(small) == 1 else b"".join(small))
            small = []
        batches.append(chunk)
    if small:
        batches.append(small[0] if len(small) == 1 else b"".join(small))
    return batches


async def _iterate_in_thread(iterator: Any) -> AsyncIterator[Any]:
    loop = asyncio.get_running_loop()
    sentinel = object()
    while True:
        item = await loop.run_in_executor(None, next, iterator, sentinel)
        if item is sentinel:
            return
        yield item
