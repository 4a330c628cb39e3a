"""Property tests of the sans-IO connection (hypothesis).

* Whatever bytes a peer sends, a server-role :class:`Connection` raises nothing but
  :class:`RemoteProtocolError`, and after one it is in ERROR.
* Valid conversations, generated step by step against a small model of the live streams,
  arrive intact on the other side, whole or in small pieces.

``derandomize=True`` keeps the suite deterministic: the same examples on every run.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.errors import RemoteProtocolError
from tether.wire import (
    NEED_DATA,
    Call,
    Cancel,
    Connection,
    ConnectionClosed,
    ConnState,
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
    Role,
    WindowUpdate,
)
from tether.wire._frames import encode_event

from ._pair import ConnectionPair, deliver

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- values and events ------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20)
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)
stream_ids = st.integers(1, 2**32 - 1)
small_ids = st.integers(1, 8)  # small ids hit live streams often
payloads8 = st.binary(min_size=8, max_size=8)

#: Anything a client could put on the wire, legal or not in context.
client_events: st.SearchStrategy[Event] = st.one_of(
    st.builds(
        Hello,
        st.integers(1, 3),
        st.dictionaries(
            st.sampled_from(["window", "max_frame", "token"]), st.integers(-1, 1 << 21)
        ),
    ),
    st.builds(
        Call,
        small_ids,
        st.text(max_size=5),
        st.text(min_size=1, max_size=5),
        st.lists(values, max_size=2),
        st.dictionaries(st.text(max_size=3), values, max_size=2),
    ),
    st.builds(OpenStream, small_ids, st.text(max_size=5), st.text(min_size=1, max_size=5)),
    st.builds(Data, small_ids, st.binary(max_size=64), st.booleans()),
    st.builds(Cancel, small_ids),
    st.builds(WindowUpdate, small_ids, st.integers(1, 2**31 - 1)),
    st.builds(Ping, payloads8),
    st.builds(Pong, payloads8),
    st.builds(GoAway, st.sampled_from(["normal", "protocol_error"]), st.text(max_size=10)),
    # What a client must never send; the server has to refuse it, not crash.
    st.builds(Result, small_ids, values),
    st.builds(Item, small_ids, values),
    st.builds(Error, small_ids, st.dictionaries(st.text(max_size=5), values, max_size=2)),
)


def valid_opening() -> bytes:
    """A plausible client byte stream: hello, a few calls and streams, data, a goodbye."""
    events: list[Event] = [
        Hello(1, {"window": 1 << 16, "max_frame": 1 << 16, "token": "t"}),
        Call(1, "node", "method", [1, "two", b"3"], {"k": [None]}),
        OpenStream(2, "node", "console"),
        Data(2, b"hello", end=False),
        WindowUpdate(2, 1000),
        Cancel(1),
        Ping(b"01234567"),
        Data(2, b"", end=True),
        Call(3, "", "m"),
        GoAway(),
    ]
    return b"".join(encode_event(event) for event in events)


def server_after(prefix: bytes = b"") -> Connection:
    """A server that has read ``prefix`` (if it holds the client's Hello, it has replied)."""
    server = Connection(Role.SERVER)
    if prefix:
        deliver(prefix, server)
        server.send(server.hello(report=[]))
    return server


def feed_checking(server: Connection, data: bytes, chunks: list[int]) -> None:
    """Feed ``data`` in pieces and then EOF; the only error allowed is RemoteProtocolError."""
    pieces: list[bytes] = []
    rest = data
    for size in chunks:
        pieces.append(rest[:size])
        rest = rest[size:]
    pieces += [rest, b""]
    try:
        for piece in pieces:
            if not piece and piece is not pieces[-1]:
                continue
            server.receive_data(piece)
            while (event := server.next_event()) is not NEED_DATA:
                assert isinstance(event, Event)
                if isinstance(event, ConnectionClosed):
                    assert server.state is ConnState.CLOSED
                    return
    except RemoteProtocolError:
        assert server.state is ConnState.ERROR
        return
    raise AssertionError("EOF was fed but the connection never reported ConnectionClosed")


# -- garbage in -------------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=300), chunks=st.lists(st.integers(1, 40), max_size=10))
def test_random_bytes_at_a_fresh_server(data: bytes, chunks: list[int]) -> None:
    feed_checking(server_after(), data, chunks)


@FUZZ
@given(data=st.binary(max_size=300), chunks=st.lists(st.integers(1, 40), max_size=10))
def test_random_bytes_after_a_handshake(data: bytes, chunks: list[int]) -> None:
    hello = encode_event(Hello(1, {"window": 1000}))
    feed_checking(server_after(hello), data, chunks)


@FUZZ
@given(
    events=st.lists(client_events, max_size=12),
    chunks=st.lists(st.integers(1, 40), max_size=10),
)
def test_random_frames_after_a_handshake(events: list[Event], chunks: list[int]) -> None:
    """Well-formed frames in random order: exercises the tables rather than the codec."""
    hello = encode_event(Hello(1, {"window": 1000}))
    data = b"".join(encode_event(event) for event in events)
    feed_checking(server_after(hello), data, chunks)


mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "set", "insert", "delete", "truncate", "duplicate"]),
        st.integers(0, 10_000),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=6,
)


def mutate(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, position, byte in edits:
        at = position % (len(buf) + 1)
        if kind == "flip" and at < len(buf):
            buf[at] ^= 1 << (byte % 8)
        elif kind == "set" and at < len(buf):
            buf[at] = byte
        elif kind == "insert":
            buf[at:at] = bytes([byte])
        elif kind == "delete":
            del buf[at : at + 1 + byte % 16]
        elif kind == "truncate":
            del buf[at:]
        elif kind == "duplicate":
            buf[at:at] = buf[at : at + 1 + byte]
    return bytes(buf)


@FUZZ
@given(edits=mutations, chunks=st.lists(st.integers(1, 40), max_size=10))
def test_mutated_valid_streams(edits: list[tuple[str, int, int]], chunks: list[int]) -> None:
    feed_checking(server_after(), mutate(valid_opening(), edits), chunks)


def test_the_unmutated_stream_is_valid() -> None:
    """The seed of the mutations is itself accepted, so mutations start from a legal stream."""
    server = server_after()
    server.receive_data(valid_opening())
    events: list[Event] = []
    while (event := server.next_event()) is not NEED_DATA:
        assert isinstance(event, Event)
        events.append(event)
        if isinstance(event, Hello):
            server.send(server.hello())
    assert [type(e) for e in events] == [
        Hello,
        Call,
        OpenStream,
        Data,
        WindowUpdate,
        Cancel,
        Ping,
        Data,
        Call,
        GoAway,
    ]
    assert server.state is ConnState.CLOSING


# -- valid conversations round-trip -----------------------------------------------------------

error_payloads = st.fixed_dictionaries(
    {
        "code": st.sampled_from(["driver_error", "cancelled", "timeout"]),
        "message": st.text(max_size=10),
    },
    optional={"remote_type": st.text(max_size=10)},
)


class _Model:
    """What the test expects to be live: call streams and byte streams with open directions."""

    def __init__(self) -> None:
        self.calls: set[int] = set()
        self.bytes: dict[int, list[bool]] = {}  # sid -> [client open, server open]
        self.next_sid = 1

    def live(self) -> list[int]:
        return sorted(self.calls | set(self.bytes))

    def new_sid(self, draw: st.DataObject) -> int:
        sid = self.next_sid + draw.draw(st.integers(0, 3), label="gap")
        self.next_sid = sid + 1
        return sid

    def end(self, sid: int, direction: int) -> None:
        self.bytes[sid][direction] = False
        if not any(self.bytes[sid]):
            del self.bytes[sid]


@FUZZ
@given(data=st.data(), chunk=st.sampled_from([None, 1, 5]))
def test_valid_conversations_round_trip(data: st.DataObject, chunk: int | None) -> None:
    pair = ConnectionPair(chunk=chunk).handshake()
    model = _Model()

    def to_server(event: Event) -> None:
        assert pair.to_server(event) == [event]

    def to_client(event: Event) -> None:
        assert pair.to_client(event) == [event]

    for _ in range(data.draw(st.integers(1, 12), label="steps")):
        actions = ["call", "open", "ping"]
        if model.calls:
            actions += ["item", "result", "crossing_cancel"]
        if model.live():
            actions += ["error", "cancel"]
        if any(ends[0] for ends in model.bytes.values()):
            actions.append("client_data")
        if any(ends[1] for ends in model.bytes.values()):
            actions.append("server_data")
        action = data.draw(st.sampled_from(actions), label="action")
        if action == "call":
            sid = model.new_sid(data)
            to_server(
                Call(
                    sid,
                    data.draw(st.text(max_size=8)),
                    data.draw(st.text(min_size=1, max_size=8)),
                    data.draw(st.lists(values, max_size=3)),
                    data.draw(st.dictionaries(st.text(max_size=5), values, max_size=3)),
                )
            )
            model.calls.add(sid)
        elif action == "open":
            sid = model.new_sid(data)
            to_server(OpenStream(sid, "node", data.draw(st.text(min_size=1, max_size=8))))
            to_client(Result(sid, None))
            model.bytes[sid] = [True, True]
        elif action == "ping":
            ping = Ping(data.draw(payloads8))
            if data.draw(st.booleans()):
                to_server(ping)
                to_client(Pong(ping.payload))
            else:
                to_client(ping)
                to_server(Pong(ping.payload))
        elif action == "item":
            to_client(Item(data.draw(st.sampled_from(sorted(model.calls))), data.draw(values)))
        elif action == "result":
            sid = data.draw(st.sampled_from(sorted(model.calls)))
            to_client(Result(sid, data.draw(values)))
            model.calls.discard(sid)
        elif action == "crossing_cancel":
            # The client's Cancel and the server's next frame cross on the wire.
            sid = data.draw(st.sampled_from(sorted(model.calls)))
            cancel = pair.client.send(Cancel(sid))
            final = data.draw(st.booleans(), label="server ends the call")
            late = pair.server.send(Result(sid, None) if final else Item(sid, data.draw(values)))
            assert deliver(late, pair.client, chunk=chunk) == []  # dropped, not an error
            # If the server had ended the call, the Cancel is late in turn and dropped too.
            expected = [] if final else [Cancel(sid)]
            assert deliver(cancel, pair.server, chunk=chunk) == expected
            model.calls.discard(sid)
        elif action in ("error", "cancel"):
            sid = data.draw(st.sampled_from(model.live()))
            if action == "error":
                to_client(Error(sid, data.draw(error_payloads)))
            else:
                to_server(Cancel(sid))
            model.calls.discard(sid)
            model.bytes.pop(sid, None)
        elif action in ("client_data", "server_data"):
            direction = 0 if action == "client_data" else 1
            sid = data.draw(
                st.sampled_from(sorted(s for s, e in model.bytes.items() if e[direction]))
            )
            event = Data(sid, data.draw(st.binary(max_size=64)), data.draw(st.booleans()))
            (to_server if direction == 0 else to_client)(event)
            if event.end:
                model.end(sid, direction)
        assert pair.client.streams == pair.server.streams == len(model.live())
        assert pair.client.state is pair.server.state is ConnState.OPEN
    to_server(GoAway())
    assert pair.client.state is pair.server.state is ConnState.CLOSING
