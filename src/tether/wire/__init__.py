"""The tether wire protocol: one connection multiplexing calls, streams and byte streams.

The codec and state machine (``Connection``, the events) are sans-IO: they import no
asyncio, socket or ssl. ``ServerProtocol`` (asyncio) and ``ClientConnection`` (blocking
threads) are the thin I/O loops around them. The spec is ``docs/protocol.md``.
"""

from ._client import ClientConnection, ClientStream
from ._connection import (
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    NEED_DATA,
    PROTOCOL_VERSION,
    Connection,
)
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
from ._handler import MAX_ERROR_TEXT, AsyncByteStream, CallHandler
from ._loop import LoopThread, new_event_loop
from ._server import (
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_STREAMS,
    ServerProtocol,
    ServerSession,
    SessionResolver,
)
from ._state import ConnState, Role
from ._tls import TLSChannel
from ._transport import Address, connect_socket, map_connect_errors, parse_address

__all__ = [
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_WINDOW",
    "MAX_ERROR_TEXT",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "Address",
    "AsyncByteStream",
    "Call",
    "CallHandler",
    "Cancel",
    "ClientConnection",
    "ClientStream",
    "ConnState",
    "Connection",
    "ConnectionClosed",
    "Data",
    "Error",
    "Event",
    "GoAway",
    "Hello",
    "Item",
    "LoopThread",
    "OpenStream",
    "Ping",
    "Pong",
    "Result",
    "Role",
    "ServerProtocol",
    "ServerSession",
    "SessionResolver",
    "TLSChannel",
    "WindowUpdate",
    "connect_socket",
    "map_connect_errors",
    "new_event_loop",
    "parse_address",
]
