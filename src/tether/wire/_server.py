"""Serving a driver tree over one connection, on asyncio.

``ServerProtocol`` is the thin I/O loop around a server-role :class:`Connection`: bytes from
the transport go in, events come out and are dispatched; each call or byte stream runs as its
own task, owned by the protocol and cancelled when the connection ends. Errors from drivers
become ERROR frames on that call only; a protocol violation closes this connection only.

Sessions are resolved at the handshake by a ``SessionResolver`` (the exporter checks the token
there and picks or creates the session); nothing driver-related runs before it accepts.
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


class ServerProtocol(asyncio.BufferedProtocol):
    """One server connection. Create one per accepted transport."""

    def __init__(self, resolve: SessionResolver, *, window: int | None = None) -> None:
        kwargs = {"window": window} if window else {}
        self.conn = Connection(Role.SERVER, **kwargs)
        self._view = memoryview(bytearray(_READ_CHUNK))
        self._resolve = resolve
        self._transport: asyncio.Transport | None = None
        self._session: ServerSession | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._inbound: dict[int, asyncio.Queue[bytes | bytearray | memoryview | None]] = {}
        self._window_waiters: dict[int, asyncio.Event] = {}
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._handshake: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self.last_received = 0.0

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass
        self.last_received = asyncio.get_running_loop().time()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        # One copy out of the receive buffer; the decoder then slices frames from it freely.
        self._feed(self._view[:nbytes].tobytes())

    def eof_received(self) -> bool:
        self._feed(b"")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._teardown()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # -- events -------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if self.conn.state in (ConnState.ERROR, ConnState.CLOSED):
            return
        loop = asyncio.get_running_loop()
        self.last_received = loop.time()
        try:
            self.conn.receive_data(data)
            while True:
                event = self.conn.next_event()
                if event is NEED_DATA:
                    break
                assert isinstance(event, Event)
                self._dispatch(event)
        except ProtocolError as exc:
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
            queue = self._inbound.get(event.stream_id)
            if queue is not None:
                if event.data:
                    queue.put_nowait(event.data)
                if event.end:
                    queue.put_nowait(None)
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
            self._handshake = asyncio.get_running_loop().create_task(self._accept(event))
        elif cls is GoAway or cls is ConnectionClosed:
            self._close()

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
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks[stream_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(stream_id, None))

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
                    value = await asyncio.get_running_loop().run_in_executor(None, call)
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
        queue: asyncio.Queue[bytes | bytearray | memoryview | None] = asyncio.Queue()
        self._inbound[sid] = queue
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
                    group.create_task(self._pump_in(sid, queue, stream))
                    group.create_task(self._pump_out(sid, stream))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
                exc = exc.exceptions[0]
            self._fail_call(sid, event.method, exc)
        finally:
            self._inbound.pop(sid, None)
            self._window_waiters.pop(sid, None)

    async def _pump_in(
        self, sid: int, queue: asyncio.Queue[bytes | bytearray | memoryview | None], stream: Any
    ) -> None:
        # Payloads are zero-copy views of received chunks; streams that do not say they take
        # buffers (``accepts_buffers = True``) get plain bytes.
        as_bytes = not getattr(stream, "accepts_buffers", False)
        while True:
            chunk = await queue.get()
            if chunk is None:
                send_eof = getattr(stream, "send_eof", None)
                if send_eof is not None:
                    await send_eof()
                return
            await stream.send(bytes(chunk) if as_bytes else chunk)
            ack = self.conn.ack_data(sid, len(chunk) + HEADER_SIZE)
            if ack and self._transport is not None:
                self._transport.write(ack)

    async def _pump_out(self, sid: int, stream: Any) -> None:
        limit = self.conn.peer_max_frame
        while True:
            chunk = await stream.receive()
            if not chunk:
                if self.conn.is_live(sid):
                    self._write(Data(sid, b"", end=True))
                return
            for start in range(0, len(chunk), limit):
                await self._wait_writable(sid)
                self._write(Data(sid, chunk[start : start + limit]))

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
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(encode_event(GoAway(code, message)))
            self._transport.close()
        self.conn.fail()
        self._teardown()

    def _close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._teardown()

    def close(self, code: str = "normal", message: str = "") -> None:
        """Say goodbye and close; calls in flight are cancelled."""
        self._abort(code, message) if code != "normal" else self._close()

    def _teardown(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self._handshake is not None:
            self._handshake.cancel()
        for task in list(self._tasks.values()):
            task.cancel()
        for waiter in self._window_waiters.values():
            waiter.set()
        if self._session is not None:
            self._session.detach(self)


async def _iterate_in_thread(iterator: Any) -> AsyncIterator[Any]:
    loop = asyncio.get_running_loop()
    sentinel = object()
    while True:
        item = await loop.run_in_executor(None, next, iterator, sentinel)
        if item is sentinel:
            return
        yield item
