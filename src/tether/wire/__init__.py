"""The tether wire protocol: one connection multiplexing calls, streams and byte streams.

The codec and state machine (``Connection``, the events) are sans-IO: they import no
asyncio, socket or ssl. ``ServerProtocol`` (asyncio) and ``ClientConnection`` (blocking
threads, over a ``ClientTransport``) are the thin I/O loops around them; what a call does is
the session's ``CallHandler``'s business (``tether.driver.CallDispatcher``). The spec is
``docs/protocol.md``.
"""

from ._client import DEFAULT_SPIN, ClientConnection, ClientStream
from ._connection import (
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
    NEED_DATA,
    PROTOCOL_VERSION,
    Connection,
)
from ._copy import copy_both_ways, copy_bytes
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
from ._handler import MAX_ERROR_TEXT, AsyncByteStream, CallHandler
from ._heap import tune_heap
from ._listener import (
    DEFAULT_MAX_PER_PEER,
    FLOOD_PENALTY,
    ConnectionLimits,
    Listener,
    bind_tcp,
    bind_unix,
    serve_listener,
)
from ._liveness import MAX_PINGS_PER_SECOND
from ._loop import LoopThread, new_event_loop
from ._loop_pool import LoopPool
from ._mock import MockTransport
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
from ._server import (
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_STREAMS,
    DEFAULT_READ_BUFFER,
    ServerProtocol,
    ServerSession,
    SessionResolver,
)
from ._spinning import DeferringServerProtocol
from ._state import ClientState, ConnState, Role
from ._tls import TLSBuffer, TLSChannel
from ._transport import Address, connect_socket, map_connect_errors, parse_address
from ._transports import ClientTransport, SocketTransport

__all__ = [
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_MAX_PER_PEER",
    "DEFAULT_MAX_STREAMS",
    "DEFAULT_READ_BUFFER",
    "DEFAULT_SPIN",
    "DEFAULT_WINDOW",
    "FLOOD_PENALTY",
    "MAX_ERROR_TEXT",
    "MAX_PINGS_PER_SECOND",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "RELAY_TRANSITIONS",
    "Address",
    "AsyncByteStream",
    "Call",
    "CallHandler",
    "Cancel",
    "ClientConnection",
    "ClientState",
    "ClientStream",
    "ClientTransport",
    "ConnState",
    "Connection",
    "ConnectionClosed",
    "ConnectionLimits",
    "Data",
    "DeferringServerProtocol",
    "Error",
    "Event",
    "GoAway",
    "Hello",
    "Item",
    "Listener",
    "LoopPool",
    "LoopThread",
    "MockTransport",
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
    "SocketTransport",
    "StreamOpening",
    "TLSBuffer",
    "TLSChannel",
    "WindowUpdate",
    "bind_tcp",
    "bind_unix",
    "connect_socket",
    "copy_both_ways",
    "copy_bytes",
    "encode_event",
    "map_connect_errors",
    "new_event_loop",
    "parse_address",
    "relay_url_for",
    "serve_listener",
    "tcp_keepalive_options",
    "tune_heap",
]
