"""The tether wire protocol: one connection multiplexing calls, streams and byte streams.

The codec and state machine (``Connection``, the events) are sans-IO: they import no
asyncio, socket or ssl. ``ServerProtocol`` (asyncio) and ``ClientConnection`` (blocking
threads) are the thin I/O loops around them. The spec is ``docs/protocol.md``.
"""

from ._client import DEFAULT_SPIN, ClientConnection, ClientStream
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
from ._loop import LoopThread, new_event_loop
from ._relay import RelayHello, RelayReply, relay_url_for, tcp_keepalive_options
from ._relay_state import (
    RELAY_TRANSITIONS,
    RelayAcceptor,
    RelayDialer,
    RelayInput,
    RelayPaired,
    RelayRole,
    RelayState,
    RelayWaiting,
)
from ._server import AsyncByteStream, ServerProtocol, ServerSession, SessionResolver
from ._spinning import DeferringServerProtocol
from ._state import ConnState, Role
from ._tls import TLSBuffer, TLSChannel
from ._transport import Address, connect_socket, map_connect_errors, parse_address

__all__ = [
    "DEFAULT_MAX_FRAME",
    "DEFAULT_SPIN",
    "DEFAULT_WINDOW",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "RELAY_TRANSITIONS",
    "Address",
    "AsyncByteStream",
    "Call",
    "Cancel",
    "ClientConnection",
    "ClientStream",
    "ConnState",
    "Connection",
    "ConnectionClosed",
    "Data",
    "DeferringServerProtocol",
    "Error",
    "Event",
    "GoAway",
    "Hello",
    "Item",
    "LoopThread",
    "OpenStream",
    "Ping",
    "Pong",
    "RelayAcceptor",
    "RelayDialer",
    "RelayHello",
    "RelayInput",
    "RelayPaired",
    "RelayReply",
    "RelayRole",
    "RelayState",
    "RelayWaiting",
    "Result",
    "Role",
    "ServerProtocol",
    "ServerSession",
    "SessionResolver",
    "TLSBuffer",
    "TLSChannel",
    "WindowUpdate",
    "connect_socket",
    "map_connect_errors",
    "new_event_loop",
    "parse_address",
    "relay_url_for",
    "tcp_keepalive_options",
]
