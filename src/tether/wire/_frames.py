"""Frame codec: events to bytes and bytes to events, no state beyond a receive buffer.

Every frame is a 10-byte header followed by ``length`` payload bytes::

    +----------------+--------+--------+----------------+
    | length: u32 BE | type u8| flags u8| stream id u32 BE|
    +----------------+--------+--------+----------------+

Payloads are msgpack (msgspec) except DATA (raw bytes), WINDOW (u32 BE) and PING/PONG (8 raw
bytes). The full layout is in ``docs/protocol.md``.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any

import msgspec

from tether.errors import LocalProtocolError, RemoteProtocolError

from ._events import (
    Call,
    Cancel,
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

__all__ = ["HEADER", "FrameDecoder", "FrameType", "encode_data_header", "encode_event"]

HEADER = struct.Struct("!IBBI")
FLAG_END = 0x01


class FrameType(IntEnum):
    HELLO = 1
    CALL = 2
    OPEN = 3
    RESULT = 4
    ITEM = 5
    ERROR = 6
    CANCEL = 7
    DATA = 8
    WINDOW = 9
    PING = 10
    PONG = 11
    GOAWAY = 12


def _encode_extension(value: Any) -> Any:
    """Values msgpack lacks: pydantic models travel as their dicts, sets as lists."""
    dump = getattr(value, "model_dump", None)
    if dump is not None:
        return dump()
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"cannot encode a {type(value).__qualname__}")


_encode = msgspec.msgpack.Encoder(enc_hook=_encode_extension).encode
_decode = msgspec.msgpack.Decoder().decode
_U32 = struct.Struct("!I")
_pack_header = HEADER.pack
#: Incomplete frames at least this large are assembled in a buffer of their own size.
_ASSEMBLE_MIN = 64 << 10


def _frame(ftype: int, stream_id: int, payload: bytes, flags: int = 0) -> bytes:
    return _pack_header(len(payload), ftype, flags, stream_id) + payload


def encode_value(value: Any) -> bytes:
    """Encode one msgpack value; unencodable values are the caller's error."""
    try:
        return _encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LocalProtocolError(f"value cannot be sent on the wire: {exc}") from exc


def encode_data_header(event: Data) -> bytes:
    """Just the header of a DATA frame, for writing header and payload without joining."""
    return _pack_header(len(event.data), FrameType.DATA, FLAG_END * event.end, event.stream_id)


def encode_event(event: Event) -> bytes:
    """Serialise one event as a whole frame."""
    cls = type(event)
    if cls is Call or cls is OpenStream:
        assert isinstance(event, StreamOpening)
        ftype = FrameType.CALL if cls is Call else FrameType.OPEN
        payload = encode_value((event.node, event.method, event.args, event.kwargs))
        return _frame(ftype, event.stream_id, payload)
    if cls is Result:
        assert isinstance(event, Result)
        return _frame(FrameType.RESULT, event.stream_id, encode_value(event.value))
    if cls is Item:
        assert isinstance(event, Item)
        return _frame(FrameType.ITEM, event.stream_id, encode_value(event.value))
    if cls is Data:
        assert isinstance(event, Data)
        return _frame(FrameType.DATA, event.stream_id, bytes(event.data), FLAG_END * event.end)
    if cls is WindowUpdate:
        assert isinstance(event, WindowUpdate)
        return _frame(FrameType.WINDOW, event.stream_id, _U32.pack(event.increment))
    if cls is Error:
        assert isinstance(event, Error)
        return _frame(FrameType.ERROR, event.stream_id, encode_value(event.error))
    if cls is Cancel:
        assert isinstance(event, Cancel)
        return _frame(FrameType.CANCEL, event.stream_id, b"")
    if cls is Hello:
        assert isinstance(event, Hello)
        return _frame(FrameType.HELLO, 0, encode_value((event.version, event.meta)))
    if cls is Ping:
        assert isinstance(event, Ping)
        return _frame(FrameType.PING, 0, event.payload)
    if cls is Pong:
        assert isinstance(event, Pong)
        return _frame(FrameType.PONG, 0, event.payload)
    if cls is GoAway:
        assert isinstance(event, GoAway)
        return _frame(FrameType.GOAWAY, 0, encode_value((event.code, event.message)))
    raise LocalProtocolError(f"{cls.__name__} cannot be sent")


class FrameDecoder:
    """Accumulates bytes and yields whole events; raises RemoteProtocolError on garbage.

    ``max_payload`` bounds one frame's payload so a peer cannot make us buffer without limit.

    Received ``bytes`` are parsed in place: DATA payloads are zero-copy memoryviews of the
    chunk the transport delivered (bytes are immutable, so that is safe). Only a frame split
    across chunks is copied into the pending buffer (a private one, never written again, so
    payloads are views of it too).

    ``feed(view, borrowed=True)`` lends a buffer the caller will reuse: payloads are then
    views of it, valid until the caller's next ``feed``, and the caller must drain
    ``next_frame`` until it returns ``None`` first (the decoder then copies the unparsed tail
    for itself). This saves a copy of every received byte for an I/O loop that copies the
    payloads it keeps anyway.
    """

    __slots__ = (
        "_after",
        "_after_views",
        "_borrowed",
        "_chunk",
        "_filled",
        "_frame",
        "_pending",
        "_pos",
        "_views",
        "max_payload",
    )

    def __init__(self, max_payload: int) -> None:
        self._chunk: bytes | bytearray | memoryview = b""
        self._pos = 0
        self._pending = bytearray()
        self._views = True  # payloads may be views of _chunk
        self._borrowed = False
        #: A large frame being assembled in a buffer of its exact size (see ``_assemble``).
        self._frame: bytearray | None = None
        self._filled = 0
        #: What followed the end of an assembled frame in the chunk that completed it.
        self._after: memoryview | None = None
        self._after_views = False
        self.max_payload = max_payload

    def feed(self, data: bytes | bytearray | memoryview, *, borrowed: bool = False) -> None:
        frame = self._frame
        if frame is not None:
            filled = self._filled
            take = min(len(frame) - filled, len(data))
            frame[filled : filled + take] = memoryview(data)[:take]
            self._filled = filled + take
            if self._filled < len(frame):
                return
            self._frame = None
            self._chunk, self._pos, self._views, self._borrowed = frame, 0, True, False
            if take < len(data):
                self._after = memoryview(data)[take:]
                self._after_views = borrowed or type(data) is bytes
            return
        if self._after is not None:  # fed again before draining: keep the order of bytes
            self._pending += memoryview(self._chunk)[self._pos :]
            self._pending += self._after
            self._chunk, self._pos, self._after = b"", 0, None
        rest = len(self._chunk) - self._pos
        if rest == 0 and not self._pending:
            self._chunk = data
            self._pos = 0
            self._borrowed = borrowed
            # A buffer the caller may write again, and did not lend: copy each payload.
            self._views = borrowed or type(data) is bytes
            return
        if rest:
            self._pending += memoryview(self._chunk)[self._pos :]
        self._pending += data
        self._chunk = self._pending
        self._pending = bytearray()
        self._pos = 0
        self._views = True
        self._borrowed = False

    def _keep_tail(self) -> None:
        """Before returning None on a lent buffer: copy what is left of it."""
        self._chunk = bytes(self._chunk[self._pos :])
        self._pos = 0
        self._borrowed = False

    def _assemble(self, size: int) -> None:
        """Start assembling a frame of ``size`` bytes that the buffered bytes only begin.

        A large frame arrives over many reads; gathering it in one buffer of its final size
        copies each byte once, where re-joining the pending bytes with every read would copy
        the frame's start again and again.
        """
        chunk, pos = self._chunk, self._pos
        frame = bytearray(size)
        have = len(chunk) - pos
        frame[:have] = memoryview(chunk)[pos:]
        self._frame, self._filled = frame, have
        self._chunk, self._pos, self._borrowed = b"", 0, False

    def _take_after(self) -> bool:
        """Move on to the bytes that followed an assembled frame; False if there are none."""
        after = self._after
        if after is None:
            return False
        self._after = None
        self._chunk, self._pos = after, 0
        self._views = self._borrowed = self._after_views
        if type(after.obj) is bytes:
            self._borrowed = False  # a view of immutable bytes stays valid
        return True

    @property
    def buffered(self) -> int:
        after = 0 if self._after is None else len(self._after)
        return len(self._chunk) - self._pos + self._filled * (self._frame is not None) + after

    def next_frame(self) -> tuple[Event, int] | None:
        """Return ``(event, payload_length)`` or ``None`` until a whole frame is buffered."""
        chunk = self._chunk
        pos = self._pos
        if len(chunk) - pos < 10:
            if pos == len(chunk) and self._take_after():
                return self.next_frame()
            if self._borrowed:
                self._keep_tail()
            return None
        length, ftype, flags, stream_id = HEADER.unpack_from(chunk, pos)
        if length > self.max_payload:
            raise RemoteProtocolError(
                f"frame of {length} bytes exceeds the limit of {self.max_payload}"
            )
        end = pos + 10 + length
        if len(chunk) < end:
            if length >= _ASSEMBLE_MIN:
                self._assemble(10 + length)
            elif self._borrowed:
                self._keep_tail()
            return None
        self._pos = end
        if self._views:
            payload: bytes | memoryview = memoryview(chunk)[pos + 10 : end]
        else:
            payload = bytes(chunk[pos + 10 : end])  # the caller may write its buffer again
        if end == len(chunk) and not self._take_after():
            self._chunk = b""
            self._pos = 0
            self._borrowed = False
        return _decode_frame(ftype, flags, stream_id, payload), length


#: Values nest at most this deep (tether's own limit: the interpreter's recursion limit, which
#: msgspec's decoder obeys, differs between Python versions and is far too deep anyway).
MAX_DEPTH = 100
#: Every byte that is not a msgpack array or map header: a payload with fewer than MAX_DEPTH
#: header bytes cannot nest that deep, so only those few payloads are walked.
_NOT_CONTAINERS = bytes(b for b in range(256) if not (0x80 <= b <= 0x9F or 0xDC <= b <= 0xDF))


def _value(payload: bytes | memoryview) -> Any:
    try:
        value = _decode(payload)
    # msgspec reports a str that is not UTF-8 as UnicodeDecodeError (a ValueError) and deep
    # nesting as RecursionError, not as DecodeError: all three are the peer's garbage.
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        raise RemoteProtocolError(f"malformed msgpack payload: {exc}") from exc
    if len(payload) > MAX_DEPTH and (
        isinstance(payload, memoryview) or len(payload.translate(None, _NOT_CONTAINERS)) > MAX_DEPTH
    ):
        _check_depth(value)
    return value


def _check_depth(value: Any) -> None:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if kind is not list and kind is not dict:
            continue
        if depth > MAX_DEPTH:
            raise RemoteProtocolError(f"malformed msgpack payload: nested deeper than {MAX_DEPTH}")
        stack.extend((child, depth + 1) for child in (item if kind is list else item.values()))


def _decode_frame(ftype: int, flags: int, stream_id: int, payload: bytes | memoryview) -> Event:
    try:
        if ftype == FrameType.DATA:
            return Data(stream_id, payload, bool(flags & FLAG_END))
        if ftype == FrameType.RESULT:
            return Result(stream_id, _value(payload))
        if ftype == FrameType.ITEM:
            return Item(stream_id, _value(payload))
        if ftype == FrameType.CALL or ftype == FrameType.OPEN:
            fields = _value(payload)
            if not isinstance(fields, list) or len(fields) != 4:
                raise RemoteProtocolError("CALL/OPEN payload must be [node, method, args, kwargs]")
            cls = Call if ftype == FrameType.CALL else OpenStream
            return cls(stream_id, *fields)
        if ftype == FrameType.WINDOW:
            if len(payload) != 4:
                raise RemoteProtocolError("WINDOW payload must be 4 bytes")
            return WindowUpdate(stream_id, _U32.unpack(payload)[0])
        if ftype == FrameType.ERROR:
            return Error(stream_id, _value(payload))
        if ftype == FrameType.CANCEL:
            return Cancel(stream_id)
        if ftype == FrameType.PING:
            return Ping(bytes(payload))
        if ftype == FrameType.PONG:
            return Pong(bytes(payload))
        if ftype == FrameType.HELLO:
            fields = _value(payload)
            if not isinstance(fields, list) or len(fields) != 2:
                raise RemoteProtocolError("HELLO payload must be [version, meta]")
            return Hello(*fields)
        if ftype == FrameType.GOAWAY:
            fields = _value(payload)
            if not isinstance(fields, list) or len(fields) != 2:
                raise RemoteProtocolError("GOAWAY payload must be [code, message]")
            return GoAway(*fields)
    except LocalProtocolError as exc:
        # An event constructor rejected a field the peer sent: that is the peer's error.
        raise RemoteProtocolError(f"invalid {_name(ftype)} frame: {exc}") from exc
    raise RemoteProtocolError(f"unknown frame type {ftype}")


def _name(ftype: int) -> str:
    try:
        return FrameType(ftype).name
    except ValueError:
        return f"type-{ftype}"
