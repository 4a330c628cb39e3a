"""The server's per-stream records and byte streams: the inbox of received DATA, the two
pumps, and the wait for send credit (a stream's window and the transport) items share.

``ServerProtocol`` mixes in :class:`ByteStreamServing`: for every OPEN it runs the driver's
stream with one pump per direction. The receive side avoids copies: payloads arrive as views
of the protocol's receive buffer, are joined once per read (``_Inbox.keep``), and when the
driver's stream can take bytes at once (``send_now``) they go to it from the receive path
itself, with no task switch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._connection import Connection
from ._events import Data, OpenStream, Result

if TYPE_CHECKING:
    from ._handler import AsyncByteStream, CallHandler

__all__ = ["ByteStreamServing", "ServedStream"]

log = logging.getLogger("tether.wire.server")

#: Payloads at least this large go to a byte-stream driver as they are, not joined.
_JOIN_BELOW = 64 << 10

_Buffer = bytes | bytearray | memoryview


class ServedStream:
    """The server's record of one live call or byte stream (one per stream id)."""

    __slots__ = ("credit", "inbox", "task")

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        #: Received DATA, for a byte stream.
        self.inbox: _Inbox | None = None
        #: Set when the peer grants credit (WINDOW), while the stream waits for it.
        self.credit: asyncio.Event | None = None


class ByteStreamServing:
    """Byte-stream serving for :class:`~tether.wire.ServerProtocol` (a mixin)."""

    conn: Connection
    _view: memoryview
    _streams: dict[int, ServedStream]
    _lent: list[_Inbox]
    _direct: list[_Inbox]
    _loop: asyncio.AbstractEventLoop | None
    _transport: asyncio.Transport | None
    _handler: CallHandler | None
    _can_write: asyncio.Event

    if TYPE_CHECKING:

        def _write(self, event: Any) -> None: ...

        def _write_raw(self, data: bytes) -> None: ...

        def _finish_stream(self, sid: int) -> None: ...

        def _fail_call(self, sid: int, method: str, exc: BaseException) -> None: ...

    async def _wait_writable(self, sid: int) -> None:
        while self.conn.send_window(sid) <= 0:
            if not self.conn.is_live(sid):
                raise asyncio.CancelledError
            credit = self._credit_of(sid)  # not the record: it holds this task (a cycle)
            credit.clear()
            await credit.wait()
        while not self._can_write.is_set():
            await self._can_write.wait()

    def _credit_of(self, sid: int) -> asyncio.Event:
        record = self._streams[sid]
        if record.credit is None:
            record.credit = asyncio.Event()
        return record.credit

    def _on_data(self, event: Data) -> None:
        record = self._streams.get(event.stream_id)
        inbox = record.inbox if record is not None else None
        if inbox is None:
            return
        data = event.data
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

    def _end_of_read(self) -> None:
        """After a read's events: hand payloads to idle pumps, copy what stays lent."""
        if self._direct:
            for inbox in self._direct:
                self._flush_direct(inbox)
            self._direct.clear()
        if self._lent:
            for inbox in self._lent:
                inbox.keep()
            self._lent.clear()

    def _flush_direct(self, inbox: _Inbox) -> None:
        """Hand the payloads gathered for an idle pump straight to the driver."""
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
            size = sum(len(chunk) for chunk in chunks)
            self._write_raw(self.conn.ack_data(inbox.sid, size, len(chunks)))
            chunks = []
        for chunk in chunks:
            lent = type(chunk) is memoryview and chunk.obj is self._view.obj
            if inbox.put(chunk, False, lent=lent):
                self._lent.append(inbox)
        if end:
            inbox.put(b"", True)

    async def _run_stream(self, event: OpenStream, inbox: _Inbox) -> None:
        sid = event.stream_id
        try:
            assert self._handler is not None
            opener = self._handler.open_stream(event.node, event.method, event.args, event.kwargs)
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
            self._finish_stream(sid)

    async def _pump_in(self, sid: int, inbox: _Inbox, stream: Any) -> None:
        # Everything that arrived since the last turn goes to the driver in one send. A lone
        # payload is a zero-copy view of a received chunk; streams that do not say they take
        # buffers (``accepts_buffers = True``) get plain bytes.
        as_bytes = not getattr(stream, "accepts_buffers", False)
        if not as_bytes:
            # ``send_now(data) -> bool``: write without waiting when the driver can.
            inbox.direct = getattr(stream, "send_now", None)
        try:
            while True:
                chunks, size, frames, eof = await inbox.take()
                if chunks:
                    for data in _batches(chunks):
                        if as_bytes and type(data) is not bytes:
                            data = bytes(data)
                        await stream.send(data)
                    self._write_raw(self.conn.ack_data(sid, size, frames))
                if eof:
                    send_eof = getattr(stream, "send_eof", None)
                    if send_eof is not None:
                        await send_eof()
                    return
        finally:
            inbox.direct = None

    async def _pump_out(self, sid: int, stream: AsyncByteStream) -> None:
        limit = self.conn.peer_max_frame
        while True:
            chunk = await stream.receive()
            if not chunk:
                if self.conn.is_live(sid):
                    await self._wait_writable(sid)
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


class _Inbox:
    """The DATA payloads received on one byte stream, taken by its pump in batches.

    Payloads arrive as views of the protocol's receive buffer; :meth:`keep` (called before
    the buffer is reused) replaces the views that arrived since the last call with one
    ``bytes`` of them all: a single copy of the data, however many frames it came in. Large
    frames the decoder assembled in a buffer of their own are kept as they are.
    """

    __slots__ = (
        "_end",
        "_frames",
        "_items",
        "_kept",
        "_loop",
        "_size",
        "_waiter",
        "direct",
        "direct_end",
        "direct_items",
        "sid",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop, sid: int) -> None:
        self._items: list[_Buffer] = []
        self._kept = 0  # _items[:_kept] are our own bytes; the rest are lent views
        self._size = 0  # payload bytes and frames not yet taken (the WINDOW credit to give)
        self._frames = 0
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
            self._size += len(data)
            self._frames += 1
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

    async def take(self) -> tuple[list[_Buffer], int, int, bool]:
        """Wait until something arrived; return the payloads, their size in bytes and in
        frames (the WINDOW credit to give back) and whether the peer ended its side."""
        while not self._items and not self._end:
            self._waiter = self._loop.create_future()
            await self._waiter
        items, size, frames = self._items, self._size, self._frames
        self._items, self._kept, self._size, self._frames = [], 0, 0, 0
        return items, size, frames, self._end


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
