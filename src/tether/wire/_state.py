"""Every legal transition of the protocol, as data.

Two levels, both owned here:

* the **connection**: the hello handshake, then OPEN, CLOSING after a GoAway, CLOSED when the
  transport ends, ERROR after any violation;
* each **stream**: a call stream (CALL → ITEM* → RESULT | ERROR) or a byte stream (OPEN, then
  DATA both ways, each direction ending with its own END flag; RESULT acknowledges the open;
  ERROR or CANCEL abort it).

``Connection`` consults these tables and raises :class:`~tether.errors.LocalProtocolError` or
:class:`~tether.errors.RemoteProtocolError` naming the role, state and event when a move is not
in them.
"""

from __future__ import annotations

from enum import Enum

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

__all__ = [
    "CLIENT_TRANSITIONS",
    "CLOSING_EVENTS",
    "CONNECTION_TRANSITIONS",
    "KIND_EVENTS",
    "OPENING_STATES",
    "STREAM_EVENTS",
    "STREAM_STATES",
    "ClientEvent",
    "ClientState",
    "ConnState",
    "Direction",
    "Role",
    "StreamKind",
    "may_send",
]


class _Enum(Enum):
    # Enum hashes by name in Python code; identity is enough for singletons and this sits on
    # the per-frame path (state sets and transition tables).
    __hash__ = object.__hash__


class Role(_Enum):
    CLIENT = "client"
    SERVER = "server"


class Direction(_Enum):
    SEND = "send"
    RECEIVE = "receive"


class ConnState(_Enum):
    START = "START"
    HELLO_SENT = "HELLO_SENT"
    HELLO_RECEIVED = "HELLO_RECEIVED"
    OPEN = "OPEN"
    CLOSING = "CLOSING"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


class StreamKind(_Enum):
    CALL = "call"
    BYTES = "bytes"


_ANY_ROLE = (Role.CLIENT, Role.SERVER)
_LIVE = (ConnState.HELLO_SENT, ConnState.HELLO_RECEIVED, ConnState.OPEN, ConnState.CLOSING)

#: (role, state, direction, event type) -> next connection state, for connection-level events.
CONNECTION_TRANSITIONS: dict[tuple[Role, ConnState, Direction, type[Event]], ConnState] = {
    (Role.CLIENT, ConnState.START, Direction.SEND, Hello): ConnState.HELLO_SENT,
    (Role.CLIENT, ConnState.HELLO_SENT, Direction.RECEIVE, Hello): ConnState.OPEN,
    (Role.SERVER, ConnState.START, Direction.RECEIVE, Hello): ConnState.HELLO_RECEIVED,
    (Role.SERVER, ConnState.HELLO_RECEIVED, Direction.SEND, Hello): ConnState.OPEN,
}
for _role in _ANY_ROLE:
    for _state in _LIVE:
        for _direction in Direction:
            CONNECTION_TRANSITIONS[(_role, _state, _direction, GoAway)] = ConnState.CLOSING
    for _state in (ConnState.OPEN, ConnState.CLOSING):
        for _direction in Direction:
            CONNECTION_TRANSITIONS[(_role, _state, _direction, Ping)] = _state
            CONNECTION_TRANSITIONS[(_role, _state, _direction, Pong)] = _state
    for _state in ConnState:
        if _state is not ConnState.ERROR:
            CONNECTION_TRANSITIONS[(_role, _state, Direction.RECEIVE, ConnectionClosed)] = (
                ConnState.CLOSED
            )

#: Stream events each role may send; the peer may receive exactly these from that role.
STREAM_EVENTS: dict[Role, frozenset[type[Event]]] = {
    Role.CLIENT: frozenset({Call, OpenStream, Cancel, Data, WindowUpdate}),
    Role.SERVER: frozenset({Result, Item, Error, Data, WindowUpdate}),
}

#: Connection states in which streams may carry events, and in which new ones may open.
STREAM_STATES = frozenset({ConnState.OPEN, ConnState.CLOSING})
OPENING_STATES = frozenset({ConnState.OPEN})

#: (kind of stream, role of the sender) -> the stream events that sender may send on it. On a
#: call stream the server sends the answer and the client only credits ITEMs or cancels.
KIND_EVENTS: dict[tuple[StreamKind, Role], frozenset[type[Event]]] = {
    (StreamKind.CALL, Role.CLIENT): frozenset({Cancel, WindowUpdate}),
    (StreamKind.CALL, Role.SERVER): frozenset({Item, Result, Error}),
    (StreamKind.BYTES, Role.CLIENT): frozenset({Data, WindowUpdate, Cancel}),
    (StreamKind.BYTES, Role.SERVER): frozenset({Data, WindowUpdate, Result, Error}),
}

#: Events that finish a stream outright, whatever direction is still open.
CLOSING_EVENTS = frozenset({Error, Cancel})


def may_send(role: Role, event_type: type[Event]) -> bool:
    return event_type in STREAM_EVENTS[role]


# -- the blocking client's lifecycle (above the protocol: the I/O loop's own state) ----------


class ClientState(_Enum):
    HANDSHAKE = "HANDSHAKE"  # our Hello is out, the server's not yet in
    OPEN = "OPEN"
    BROKEN = "BROKEN"  # lost, refused, a protocol error: calls fail at once
    CLOSED = "CLOSED"  # close() was called


class ClientEvent(_Enum):
    ACCEPTED = "accepted"  # the server's Hello arrived
    FAILED = "failed"  # the transport or the protocol broke, or the server refused us
    CLOSE = "close"  # the user closed the connection


#: (state, event) -> next state of ``ClientConnection``; anything else is a bug.
CLIENT_TRANSITIONS: dict[tuple[ClientState, ClientEvent], ClientState] = {
    (ClientState.HANDSHAKE, ClientEvent.ACCEPTED): ClientState.OPEN,
    (ClientState.HANDSHAKE, ClientEvent.FAILED): ClientState.BROKEN,
    (ClientState.HANDSHAKE, ClientEvent.CLOSE): ClientState.CLOSED,
    (ClientState.OPEN, ClientEvent.FAILED): ClientState.BROKEN,
    (ClientState.OPEN, ClientEvent.CLOSE): ClientState.CLOSED,
    (ClientState.BROKEN, ClientEvent.FAILED): ClientState.BROKEN,
    (ClientState.BROKEN, ClientEvent.CLOSE): ClientState.CLOSED,
    (ClientState.CLOSED, ClientEvent.FAILED): ClientState.CLOSED,
    (ClientState.CLOSED, ClientEvent.CLOSE): ClientState.CLOSED,
}
