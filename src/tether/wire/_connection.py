"""The sans-IO connection: bytes in, events out; events in, bytes out.

Theory of operation. A :class:`Connection` holds the state of one protocol connection (the
handshake, every live stream, flow-control windows) and nothing else: no sockets, no event
loop, no threads. The I/O layer feeds received bytes to :meth:`receive_data`, drains
:meth:`next_event` until it returns ``NEED_DATA``, and writes whatever :meth:`send` returns.

Every event in either direction passes the transition tables in ``_state``; the first illegal
one moves the connection to ``ERROR`` and every later call raises at once (as h11 does).

Flow control: every byte stream and every streaming call has a window per direction, in
bytes of DATA and ITEM frames counted *with* their 10-byte header (so a flood of tiny items is
bounded too). Call streams get a sixteenth of the byte-stream window: items are parsed one by
one, and a cancelled stream's backlog must stay short. A sender may send while its window is
positive (so one frame may overdraw it); the receiver returns credit with WINDOW frames as the
application consumes (:meth:`ack_data`). A receiver therefore never buffers more than
``window + max_frame`` bytes per stream, however slowly it reads.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from tether.errors import LocalProtocolError, RemoteProtocolError

from ._events import (
    Call,
    ConnectionClosed,
    Data,
    Event,
    Hello,
    Item,
    OpenStream,
    Result,
    WindowUpdate,
)
from ._frames import FrameDecoder, encode_data_header, encode_event
from ._state import (
    CLOSING_EVENTS,
    CONNECTION_TRANSITIONS,
    KIND_EVENTS,
    OPENING_STATES,
    STREAM_EVENTS,
    STREAM_STATES,
    ConnState,
    Direction,
    Role,
    StreamKind,
)

__all__ = [
    "DEFAULT_MAX_FRAME",
    "DEFAULT_WINDOW",
    "NEED_DATA",
    "PROTOCOL_VERSION",
    "Connection",
]

PROTOCOL_VERSION: Final = 1
DEFAULT_MAX_FRAME: Final = 1 << 20
DEFAULT_WINDOW: Final = 4 << 20
#: Before the handshake completes a peer is unauthenticated: keep its frames small.
HANDSHAKE_MAX_FRAME: Final = 64 << 10
#: Streaming calls get this fraction of the window (see the module docstring).
CALL_WINDOW_SHARE: Final = 16
HEADER_SIZE: Final = 10


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = _NeedData()


@dataclass(slots=True)
class _Stream:
    """Everything the connection knows about one live stream (one record per stream id)."""

    kind: StreamKind
    sends: frozenset[type[Event]]
    receives: frozenset[type[Event]]
    local_open: bool
    remote_open: bool
    send_window: int
    recv_window: int
    window: int
    unacked: int = 0
    #: Flow-control size of each ITEM received and not yet acknowledged (see ``ack_item``);
    #: made with the first ITEM (most calls get none).
    items: deque[int] | None = None


class Connection:
    """One end of a tether protocol connection.

    Args:
        role: ``Role.CLIENT`` opens streams; ``Role.SERVER`` answers them.
        window: the receive window this side grants per stream (advertised in ``Hello``).
        max_frame: the largest payload this side accepts after the handshake.
    """

    def __init__(
        self,
        role: Role,
        *,
        window: int = DEFAULT_WINDOW,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.role = role
        self.state = ConnState.START
        self.window = window
        self.max_frame = max_frame
        self.peer_window = DEFAULT_WINDOW
        # Until the peer's Hello says otherwise it accepts only handshake-sized frames.
        self.peer_max_frame = HANDSHAKE_MAX_FRAME
        self.peer_hello: Hello | None = None
        self._peer_role = Role.SERVER if role is Role.CLIENT else Role.CLIENT
        self._sends = STREAM_EVENTS[role]
        self._receives = STREAM_EVENTS[self._peer_role]
        # Per kind of stream: (kind, what we send, what we receive, local open, remote open,
        # window share). The client sends nothing but Cancel and WINDOW on a call stream; the
        # server sends the results.
        is_client = role is Role.CLIENT
        self._shapes = {
            Call: (
                StreamKind.CALL,
                KIND_EVENTS[StreamKind.CALL, role],
                KIND_EVENTS[StreamKind.CALL, self._peer_role],
                not is_client,
                is_client,
                CALL_WINDOW_SHARE,
            ),
            OpenStream: (
                StreamKind.BYTES,
                KIND_EVENTS[StreamKind.BYTES, role],
                KIND_EVENTS[StreamKind.BYTES, self._peer_role],
                True,
                True,
                1,
            ),
        }
        self._decoder = FrameDecoder(HANDSHAKE_MAX_FRAME)
        self._streams: dict[int, _Stream] = {}
        self._highest_stream_id = 0
        self._closed_by_peer = False

    # -- queries ------------------------------------------------------------------------------

    @property
    def streams(self) -> int:
        """Number of live streams."""
        return len(self._streams)

    def send_window(self, stream_id: int) -> int:
        """Bytes this side may still send on ``stream_id`` (0 when the stream is gone)."""
        stream = self._streams.get(stream_id)
        return stream.send_window if stream is not None else 0

    def is_live(self, stream_id: int) -> bool:
        return stream_id in self._streams

    def next_stream_id(self) -> int:
        """A fresh stream id for the client's next Call or OpenStream."""
        return self._highest_stream_id + 1

    # -- receiving ----------------------------------------------------------------------------

    def receive_data(self, data: bytes | memoryview, *, borrowed: bool = False) -> None:
        """Feed bytes read from the transport; ``b""`` means the peer closed it.

        ``borrowed=True`` lends ``data`` (a view of a buffer the caller reuses for its next
        read): DATA payloads returned are then views of it, valid until the next call; the
        caller must drain :meth:`next_event` to ``NEED_DATA`` before reusing the buffer and
        copy any payload it keeps.
        """
        self._check_usable()
        if not data:
            self._closed_by_peer = True
            return
        self._decoder.feed(data, borrowed=borrowed)

    def next_event(self) -> Event | _NeedData:
        """Return the next whole event, or ``NEED_DATA``. Raises RemoteProtocolError."""
        if self.state is ConnState.ERROR:
            self._check_usable()
        next_frame = self._decoder.next_frame
        receives = self._receives
        try:
            while True:
                frame = next_frame()
                if frame is None:
                    if self._closed_by_peer:
                        if self._decoder.buffered:
                            raise RemoteProtocolError("connection closed in the middle of a frame")
                        if self.state is not ConnState.CLOSED:
                            self._transition(Direction.RECEIVE, ConnectionClosed())
                            return ConnectionClosed()
                    return NEED_DATA
                event, length = frame
                counted = length + HEADER_SIZE
                if type(event) in receives:
                    processed = self._stream_event(Direction.RECEIVE, event, counted)
                else:
                    processed = self._connection_event(event)
                if processed is not NEED_DATA:
                    return processed
                # A late frame for an ended stream was dropped: look at the next one.
        except RemoteProtocolError:
            self.state = ConnState.ERROR
            raise

    def _connection_event(self, event: Event) -> Event:
        cls = type(event)
        if cls in self._sends:
            raise RemoteProtocolError(
                f"{self._peer_role.value} may not send {cls.__name__} (state {self.state.name})"
            )
        self._transition(Direction.RECEIVE, event)
        if cls is Hello:
            assert isinstance(event, Hello)
            self._accept_hello(event)
        return event

    def _accept_hello(self, hello: Hello) -> None:
        if hello.version != PROTOCOL_VERSION:
            raise RemoteProtocolError(
                f"hello: unsupported protocol version {hello.version} "
                f"(this side speaks {PROTOCOL_VERSION})"
            )
        self.peer_hello = hello
        window = hello.meta.get("window", DEFAULT_WINDOW)
        max_frame = hello.meta.get("max_frame", DEFAULT_MAX_FRAME)
        if type(window) is not int or type(max_frame) is not int or window < 1 or max_frame < 1:
            raise RemoteProtocolError("hello: window and max_frame must be positive ints")
        self.peer_window = window
        self.peer_max_frame = max_frame
        # Our own limit rises when we send our Hello: for the server that is after its
        # resolver accepted the client, so an unauthenticated peer stays at 64 KiB.

    # -- sending ------------------------------------------------------------------------------

    def hello(self, **meta: object) -> Hello:
        """Build this side's Hello, advertising its window and frame limit."""
        return Hello(PROTOCOL_VERSION, {"window": self.window, "max_frame": self.max_frame, **meta})

    def send(self, event: Event) -> bytes:
        """Return the bytes for ``event``, or ``b""`` for a stream the peer already ended.

        Raises:
            LocalProtocolError: the event is not legal now; the connection is in ERROR after.
        """
        if self.state is ConnState.ERROR:
            self._check_usable()
        # Encoding and the size check come first and change no state: an unencodable or
        # oversized value is the caller's error for that event only, not a broken connection.
        data = encode_event(event)
        self._check_size(len(data) - HEADER_SIZE)
        try:
            cls = type(event)
            if cls in self._sends:
                if self._stream_event(Direction.SEND, event, len(data)) is NEED_DATA:
                    return b""
            elif cls in self._receives:
                raise LocalProtocolError(f"{self.role.value} may not send {cls.__name__}")
            else:
                self._transition(Direction.SEND, event)
                if cls is Hello:
                    self._decoder.max_payload = self.max_frame
            return data
        except LocalProtocolError:
            self.state = ConnState.ERROR
            raise

    def _check_size(self, size: int) -> None:
        if size > self.peer_max_frame:
            raise LocalProtocolError(
                f"frame of {size} bytes exceeds the peer's limit of {self.peer_max_frame}"
            )

    def send_parts(self, event: Data) -> list[bytes | bytearray | memoryview]:
        """Like :meth:`send` for DATA, but header and payload unjoined (no copy of the payload).

        Returns an empty list for a stream the peer already ended.
        """
        self._check_usable()
        size = len(event.data)
        self._check_size(size)
        try:
            if self._stream_event(Direction.SEND, event, size + HEADER_SIZE) is NEED_DATA:
                return []
        except LocalProtocolError:
            self.state = ConnState.ERROR
            raise
        return [encode_data_header(event), event.data]

    def ack_data(self, stream_id: int, consumed: int, frames: int = 0) -> bytes:
        """Tell the connection the application consumed ``consumed`` payload bytes of
        ``stream_id``, received in ``frames`` frames (the connection adds their headers).

        Returns the bytes of a WINDOW frame once enough credit has piled up (a quarter of the
        window), else ``b""``. Batching keeps WINDOW frames rare on fast streams.
        """
        stream = self._streams.get(stream_id)
        return self._credit(stream, stream_id, consumed + HEADER_SIZE * frames)

    def ack_item(self, stream_id: int) -> bytes:
        """Tell the connection the application consumed the oldest ITEM of a streaming call;
        returns a WINDOW frame's bytes or ``b""`` (as :meth:`ack_data`)."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.items:  # no stream, or no ITEM unacknowledged
            return b""
        return self._credit(stream, stream_id, stream.items.popleft())

    def _credit(self, stream: _Stream | None, stream_id: int, consumed: int) -> bytes:
        if stream is None or not stream.remote_open or consumed <= 0:
            return b""
        stream.unacked += consumed
        if stream.unacked < stream.window // 4:
            return b""
        increment, stream.unacked = stream.unacked, 0
        stream.recv_window += increment
        return encode_event(WindowUpdate(stream_id, increment))

    # -- the tables ---------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self.state is ConnState.ERROR:
            raise LocalProtocolError("connection is in ERROR after an earlier protocol error")

    def _transition(self, direction: Direction, event: Event) -> None:
        key = (self.role, self.state, direction, type(event))
        new_state = CONNECTION_TRANSITIONS.get(key)
        if new_state is None:
            self._illegal(direction, event, f"in connection state {self.state.name}")
        else:
            self.state = new_state

    def _illegal(self, direction: Direction, event: Event, why: str) -> None:
        error = LocalProtocolError if direction is Direction.SEND else RemoteProtocolError
        raise error(f"{self.role.value} may not {direction.value} {type(event).__name__} {why}")

    def _stream_event(self, direction: Direction, event: Event, counted: int) -> Event | _NeedData:
        if self.state not in STREAM_STATES:
            self._illegal(direction, event, f"in connection state {self.state.name}")
        stream_id: int = event.stream_id  # type: ignore[attr-defined]
        cls = type(event)
        stream = self._streams.get(stream_id)
        if cls is Call or cls is OpenStream:
            return self._open_stream(direction, event, stream_id)
        if stream is None:
            if stream_id <= self._highest_stream_id:
                # A late frame for a stream one side already ended (e.g. a result that crossed
                # a cancel): drop it, as HTTP/2 does.
                return NEED_DATA
            self._illegal(direction, event, f"on stream {stream_id}, which was never opened")
            raise AssertionError  # unreachable; _illegal raises
        if cls not in (stream.sends if direction is Direction.SEND else stream.receives):
            self._illegal(direction, event, f"on a {stream.kind.value} stream")
        if cls in CLOSING_EVENTS:
            del self._streams[stream_id]
            return event
        if cls is WindowUpdate:
            assert isinstance(event, WindowUpdate)
            if direction is Direction.RECEIVE:
                stream.send_window += event.increment
            else:
                stream.recv_window += event.increment  # the credit we grant the peer
            return event
        sending = direction is Direction.SEND
        if (stream.local_open if sending else stream.remote_open) is False:
            self._illegal(direction, event, f"on stream {stream_id} after its end")
        if cls is Result:
            if stream.kind is StreamKind.CALL:
                del self._streams[stream_id]
            return event
        # Data or Item: flow controlled.
        if sending:
            if counted > HEADER_SIZE and stream.send_window <= 0:
                raise LocalProtocolError(f"stream {stream_id}: send window exhausted")
            stream.send_window -= counted
        else:
            stream.recv_window -= counted
            if stream.recv_window < -(self.max_frame + HEADER_SIZE):
                raise RemoteProtocolError(f"stream {stream_id}: peer overran its window")
            if cls is Item:
                if stream.items is None:
                    stream.items = deque()
                stream.items.append(counted)
        if cls is Data and event.end:  # type: ignore[attr-defined]
            if sending:
                stream.local_open = False
            else:
                stream.remote_open = False
            if not stream.local_open and not stream.remote_open:
                del self._streams[stream_id]
        return event

    def _open_stream(self, direction: Direction, event: Event, stream_id: int) -> Event | _NeedData:
        if stream_id <= self._highest_stream_id:
            self._illegal(direction, event, f"with stream id {stream_id}, which is not new")
        self._highest_stream_id = stream_id
        if self.state not in OPENING_STATES:
            if direction is Direction.RECEIVE:
                return NEED_DATA  # crossed our GoAway: ignore, the connection is closing
            self._illegal(direction, event, f"in connection state {self.state.name}")
        kind, sends, receives, local_open, remote_open, share = self._shapes[type(event)]  # type: ignore[index]
        window = self.window // share
        send_window = self.peer_window // share
        self._streams[stream_id] = _Stream(
            kind, sends, receives, local_open, remote_open, send_window, window, window
        )
        return event

    def fail(self) -> None:
        """Move to ERROR (the I/O layer hit an error it cannot recover from)."""
        self.state = ConnState.ERROR
