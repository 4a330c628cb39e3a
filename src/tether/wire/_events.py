"""Protocol events: what a :class:`~tether.wire.Connection` takes in ``send`` and gives out of
``next_event``. Each maps to one frame on the wire (see ``docs/protocol.md``).

Events are frozen, slotted dataclasses that validate their fields on construction, so a bad
event fails where it is made, not deep inside the codec.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tether.errors import LocalProtocolError

__all__ = [
    "Call",
    "Cancel",
    "ConnectionClosed",
    "Data",
    "Error",
    "Event",
    "GoAway",
    "Hello",
    "Item",
    "OpenStream",
    "Ping",
    "Pong",
    "Result",
    "StreamOpening",
    "WindowUpdate",
]

MAX_STREAM_ID = 2**32 - 1


def _check_stream_id(stream_id: int) -> None:
    if type(stream_id) is not int or not 0 < stream_id <= MAX_STREAM_ID:
        raise LocalProtocolError(f"stream id must be an int in 1..2**32-1, got {stream_id!r}")


class Event:
    """Base class of every protocol event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Hello(Event):
    """First event each side sends: protocol version and connection metadata."""

    version: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if type(self.version) is not int or self.version < 1:
            raise LocalProtocolError(f"Hello.version must be a positive int, got {self.version!r}")
        if not isinstance(self.meta, dict):
            raise LocalProtocolError("Hello.meta must be a dict")


@dataclass(frozen=True, slots=True)
class StreamOpening(Event):
    """What opens a stream (the base of :class:`Call` and :class:`OpenStream`): the node,
    the method and its arguments, on a fresh stream id."""

    stream_id: int
    node: str
    method: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)
        _check_target(self.node, self.method, self.args, self.kwargs)


@dataclass(frozen=True, slots=True)
class Call(StreamOpening):
    """Client → server: call ``method`` of node ``node``; the reply is a Result, Items or Error."""


@dataclass(frozen=True, slots=True)
class OpenStream(StreamOpening):
    """Client → server: open a bidirectional byte stream on an ``export_stream`` method."""


def _check_target(node: object, method: object, args: object, kwargs: object) -> None:
    if not isinstance(node, str) or not isinstance(method, str) or not method:
        raise LocalProtocolError("node and method must be strings, method non-empty")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise LocalProtocolError("args must be a list and kwargs a dict")


@dataclass(frozen=True, slots=True)
class Result(Event):
    """Server → client: the call finished with ``value`` (``None`` ends a streaming call)."""

    stream_id: int
    value: Any = None

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)


@dataclass(frozen=True, slots=True)
class Item(Event):
    """Server → client: one item of a streaming call (counts against the stream window)."""

    stream_id: int
    value: Any

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)


@dataclass(frozen=True, slots=True)
class Error(Event):
    """Server → client: the call or byte stream failed. ``error`` is a dict with at least
    ``code`` and ``message`` (see ``docs/protocol.md`` section 7)."""

    stream_id: int
    error: dict[str, Any]

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)
        if not isinstance(self.error, dict):
            raise LocalProtocolError("Error.error must be a dict")


@dataclass(frozen=True, slots=True)
class Cancel(Event):
    """Client → server: cancel a call or byte stream. Both sides forget the stream at once;
    no reply is sent."""

    stream_id: int

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)


@dataclass(frozen=True, slots=True)
class Data(Event):
    """Either side: bytes on a byte stream; ``end`` half-closes the sender's direction."""

    stream_id: int
    data: bytes | bytearray | memoryview
    end: bool = False

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)
        if not isinstance(self.data, bytes | bytearray | memoryview):
            raise LocalProtocolError("Data.data must be bytes-like")


@dataclass(frozen=True, slots=True)
class WindowUpdate(Event):
    """Either side: the receiver consumed ``increment`` bytes; the sender may send more."""

    stream_id: int
    increment: int

    def __post_init__(self) -> None:
        _check_stream_id(self.stream_id)
        if type(self.increment) is not int or not 0 < self.increment < 2**31:
            raise LocalProtocolError(f"window increment must be in 1..2**31-1: {self.increment!r}")


@dataclass(frozen=True, slots=True)
class Ping(Event):
    """Either side: liveness probe; the peer answers with a Pong carrying the same payload."""

    payload: bytes = b"\0" * 8

    def __post_init__(self) -> None:
        if not isinstance(self.payload, bytes) or len(self.payload) != 8:
            raise LocalProtocolError("Ping.payload must be 8 bytes")


@dataclass(frozen=True, slots=True)
class Pong(Event):
    """Answer to a Ping."""

    payload: bytes = b"\0" * 8

    def __post_init__(self) -> None:
        if not isinstance(self.payload, bytes) or len(self.payload) != 8:
            raise LocalProtocolError("Pong.payload must be 8 bytes")


@dataclass(frozen=True, slots=True)
class GoAway(Event):
    """Either side: the connection is closing; ``code`` says why (``"normal"`` when clean)."""

    code: str = "normal"
    message: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not isinstance(self.message, str):
            raise LocalProtocolError("GoAway code and message must be strings")


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The peer closed the transport (``receive_data(b"")``). Never sent."""
