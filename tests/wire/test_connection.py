"""``tether.wire._connection`` (and the tables in ``_state``): a client and a server
:class:`Connection` back to back in memory, through :class:`ConnectionPair`.

Over 700 lines on purpose: it mirrors two modules (the connection and its transition tables),
and keeping every rule of the state machine in one file keeps the tables and their tests side
by side.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tether.errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from tether.wire import (
    DEFAULT_MAX_FRAME,
    DEFAULT_WINDOW,
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
from tether.wire._connection import CALL_WINDOW_SHARE, HANDSHAKE_MAX_FRAME, HEADER_SIZE
from tether.wire._frames import HEADER, FrameType, encode_event

from ._pair import ConnectionPair, deliver

ERROR_PAYLOAD = {"code": "driver_error", "message": "boom", "remote_type": "ValueError"}


@pytest.fixture(params=[None, 1], ids=["whole", "bytewise"])
def pair(request: pytest.FixtureRequest) -> ConnectionPair:
    """An OPEN pair; every test using it runs twice, the second time one byte at a time."""
    return ConnectionPair(chunk=request.param).handshake()


def assert_in_error(conn: Connection) -> None:
    """ERROR is terminal: every later call fails at once, without looking at its argument."""
    assert conn.state is ConnState.ERROR
    calls: list[Callable[[], object]] = [
        lambda: conn.send(Ping()),
        lambda: conn.send(GoAway()),
        lambda: conn.receive_data(b"anything"),
        lambda: conn.receive_data(b""),
        conn.next_event,
    ]
    for call in calls:
        with pytest.raises(LocalProtocolError, match="connection is in ERROR"):
            call()


# -- handshake --------------------------------------------------------------------------------


def test_handshake_states_step_by_step() -> None:
    pair = ConnectionPair()
    client, server = pair.client, pair.server
    assert client.state is server.state is ConnState.START
    hello = client.hello(token="secret")
    assert hello == Hello(
        1, {"window": DEFAULT_WINDOW, "max_frame": DEFAULT_MAX_FRAME, "token": "secret"}
    )
    data = client.send(hello)
    assert client.state is ConnState.HELLO_SENT
    assert deliver(data, server) == [hello]
    assert server.state is ConnState.HELLO_RECEIVED
    reply = server.hello(report=[{"uuid": "u"}])
    assert deliver(server.send(reply), client) == [reply]
    assert server.state is client.state is ConnState.OPEN
    assert client.peer_hello == reply and server.peer_hello == hello


def test_hello_advertises_window_and_max_frame_and_the_peer_adopts_them() -> None:
    pair = ConnectionPair(
        client_window=1000, server_window=2000, client_max_frame=300, server_max_frame=400
    ).handshake()
    assert (pair.server.peer_window, pair.server.peer_max_frame) == (1000, 300)
    assert (pair.client.peer_window, pair.client.peer_max_frame) == (2000, 400)
    pair.to_server(OpenStream(1, "n", "m"))
    assert pair.server.send_window(1) == 1000
    assert pair.client.send_window(1) == 2000


def test_a_hello_without_meta_means_the_defaults() -> None:
    server = Connection(Role.SERVER, window=10, max_frame=20)
    assert deliver(encode_event(Hello(1)), server) == [Hello(1)]
    assert (server.peer_window, server.peer_max_frame) == (DEFAULT_WINDOW, DEFAULT_MAX_FRAME)


@pytest.mark.parametrize(
    "meta",
    [
        {"window": 0},
        {"window": -1},
        {"window": "big"},
        {"window": True},
        {"max_frame": 0},
        {"max_frame": 1.5},
        {"max_frame": None},
    ],
)
def test_a_hello_with_bad_limits_is_a_remote_protocol_error(meta: dict[str, object]) -> None:
    server = Connection(Role.SERVER)
    with pytest.raises(RemoteProtocolError, match="window and max_frame must be positive ints"):
        deliver(encode_event(Hello(1, meta)), server)
    assert_in_error(server)


def test_a_hello_with_an_unknown_version_is_refused() -> None:
    server = Connection(Role.SERVER)
    with pytest.raises(RemoteProtocolError, match="version"):
        deliver(encode_event(Hello(2)), server)


def test_before_the_handshake_frames_are_limited_to_64_kib() -> None:
    server = Connection(Role.SERVER)
    assert HANDSHAKE_MAX_FRAME == 64 << 10
    server.receive_data(HEADER.pack(HANDSHAKE_MAX_FRAME + 1, FrameType.HELLO, 0, 0))
    with pytest.raises(RemoteProtocolError, match=f"exceeds the limit of {64 << 10}"):
        server.next_event()
    assert_in_error(server)


def test_after_the_handshake_the_limit_is_max_frame() -> None:
    pair = ConnectionPair().handshake()  # whole frames only: 1 MiB byte by byte is slow
    pair.to_server(OpenStream(1, "n", "m"))
    big = Data(1, b"x" * DEFAULT_MAX_FRAME)
    assert pair.to_server(big) == [big]
    pair.server.receive_data(HEADER.pack(DEFAULT_MAX_FRAME + 1, FrameType.DATA, 0, 1))
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        pair.server.next_event()


def test_the_client_accepts_a_large_server_hello() -> None:
    """The server's Hello carries the driver report, which may well exceed 64 KiB."""
    pair = ConnectionPair()
    pair.to_server(pair.client.hello())
    report = [{"uuid": str(i), "doc": "x" * 1000} for i in range(100)]
    assert pair.to_client(pair.server.hello(report=report)) == [pair.server.hello(report=report)]


def test_the_server_keeps_the_64_kib_limit_until_it_has_sent_its_hello() -> None:
    server = Connection(Role.SERVER)
    deliver(encode_event(Hello(1, {"token": "unchecked"})), server)
    assert server.state is ConnState.HELLO_RECEIVED
    server.receive_data(HEADER.pack(HANDSHAKE_MAX_FRAME + 1, FrameType.CALL, 0, 1))
    with pytest.raises(RemoteProtocolError, match="exceeds the limit"):
        server.next_event()


# -- calls ------------------------------------------------------------------------------------


def test_call_then_result(pair: ConnectionPair) -> None:
    call = Call(1, "node", "method", [1, "a"], {"k": None})
    assert pair.to_server(call) == [call]
    assert pair.client.is_live(1) and pair.server.is_live(1)
    assert pair.to_client(Result(1, {"answer": 42})) == [Result(1, {"answer": 42})]
    assert not pair.client.is_live(1) and not pair.server.is_live(1)
    assert pair.client.streams == pair.server.streams == 0


def test_call_then_error(pair: ConnectionPair) -> None:
    pair.to_server(Call(1, "n", "m"))
    assert pair.to_client(Error(1, ERROR_PAYLOAD)) == [Error(1, ERROR_PAYLOAD)]
    assert pair.client.streams == pair.server.streams == 0


def test_streaming_call_items_then_result(pair: ConnectionPair) -> None:
    pair.to_server(Call(1, "n", "count"))
    for i in range(5):
        assert pair.to_client(Item(1, i)) == [Item(1, i)]
        assert pair.client.is_live(1)
    assert pair.to_client(Result(1)) == [Result(1, None)]
    assert pair.client.streams == pair.server.streams == 0


def test_streaming_call_ends_with_error(pair: ConnectionPair) -> None:
    pair.to_server(Call(1, "n", "count"))
    pair.to_client(Item(1, "first"))
    assert pair.to_client(Error(1, ERROR_PAYLOAD)) == [Error(1, ERROR_PAYLOAD)]
    assert pair.client.streams == 0


def test_many_calls_interleave(pair: ConnectionPair) -> None:
    for sid in (1, 2, 3):
        pair.to_server(Call(sid, "n", "m", [sid]))
    assert pair.to_client(Item(2, "b")) == [Item(2, "b")]
    assert pair.to_client(Result(3, 3)) == [Result(3, 3)]
    assert pair.to_client(Result(1, 1)) == [Result(1, 1)]
    assert pair.to_client(Result(2)) == [Result(2)]
    assert pair.client.streams == pair.server.streams == 0


# -- byte streams -----------------------------------------------------------------------------


def test_byte_stream_both_directions_with_end_flags(pair: ConnectionPair) -> None:
    client, server = pair.client, pair.server
    assert pair.to_server(OpenStream(1, "n", "console", [], {"baud": 9600})) == [
        OpenStream(1, "n", "console", [], {"baud": 9600})
    ]
    assert pair.to_client(Result(1)) == [Result(1)]  # acknowledges the open
    assert pair.to_server(Data(1, b"ping")) == [Data(1, b"ping")]
    assert pair.to_client(Data(1, b"pong")) == [Data(1, b"pong")]
    # The client half-closes; the server's direction stays open.
    assert pair.to_server(Data(1, b"last", end=True)) == [Data(1, b"last", end=True)]
    assert client.is_live(1) and server.is_live(1)
    assert pair.to_client(Data(1, b"still")) == [Data(1, b"still")]
    assert pair.to_client(Data(1, b"", end=True)) == [Data(1, b"", end=True)]
    assert client.streams == server.streams == 0


def test_data_after_our_own_end_is_a_local_protocol_error(pair: ConnectionPair) -> None:
    pair.to_server(OpenStream(1, "n", "m"))
    pair.to_server(Data(1, b"", end=True))
    with pytest.raises(LocalProtocolError, match="client may not send Data on stream 1 after its"):
        pair.client.send(Data(1, b"more"))
    assert_in_error(pair.client)


def test_byte_stream_closes_when_both_ends_are_sent(pair: ConnectionPair) -> None:
    pair.to_server(OpenStream(1, "n", "m"))
    pair.to_client(Result(1))
    pair.to_client(Data(1, b"out", end=True))
    assert pair.client.is_live(1) and pair.server.is_live(1)
    pair.to_server(Data(1, b"in", end=True))
    assert pair.client.streams == pair.server.streams == 0


def test_data_after_the_peers_end_is_a_remote_protocol_error(pair: ConnectionPair) -> None:
    pair.to_server(OpenStream(1, "n", "m"))
    pair.to_server(Data(1, b"", end=True))
    with pytest.raises(RemoteProtocolError, match="may not receive Data on stream 1 after its end"):
        deliver(encode_event(Data(1, b"late")), pair.server)
    assert_in_error(pair.server)


def test_server_error_aborts_a_byte_stream(pair: ConnectionPair) -> None:
    pair.to_server(OpenStream(1, "n", "m"))
    pair.to_server(Data(1, b"x"))
    assert pair.to_client(Error(1, ERROR_PAYLOAD)) == [Error(1, ERROR_PAYLOAD)]
    assert pair.client.streams == pair.server.streams == 0


def test_an_open_can_be_refused_with_an_error(pair: ConnectionPair) -> None:
    pair.to_server(OpenStream(1, "n", "not_a_stream"))
    error = {"code": "method_not_found", "message": "not a byte stream"}
    assert pair.to_client(Error(1, error)) == [Error(1, error)]
    assert pair.client.streams == 0


# -- cancellation and late frames -------------------------------------------------------------


def test_cancel_a_call(pair: ConnectionPair) -> None:
    pair.to_server(Call(1, "n", "wait_forever"))
    assert pair.to_server(Cancel(1)) == [Cancel(1)]
    assert pair.client.streams == pair.server.streams == 0
    # The server forgets the stream too: whatever it still sends is not sent at all.
    assert pair.server.send(Error(1, {"code": "cancelled", "message": ""})) == b""
    assert pair.server.send(Result(1, "too late")) == b""


def test_cancel_a_byte_stream(pair: ConnectionPair) -> None:
    pair.to_server(OpenStream(1, "n", "m"))
    pair.to_client(Result(1))
    pair.to_client(Data(1, b"x"))
    assert pair.to_server(Cancel(1)) == [Cancel(1)]
    assert pair.client.streams == pair.server.streams == 0
    assert pair.server.send(Data(1, b"late")) == b""


@pytest.mark.parametrize(
    "late",
    [
        Result(1, "x"),
        Item(1, "x"),
        Error(1, ERROR_PAYLOAD),
        Data(1, b"x"),
        Data(1, b"", end=True),
        WindowUpdate(1, 10),
    ],
    ids=lambda e: type(e).__name__,
)
def test_late_frames_for_a_cancelled_stream_are_dropped(pair: ConnectionPair, late: Event) -> None:
    """A frame that crossed the Cancel on the wire is no error: it is dropped."""
    pair.to_server(OpenStream(1, "n", "m"))
    pair.to_client(Result(1))
    pair.client.send(Cancel(1))  # not yet delivered
    assert deliver(encode_event(late), pair.client) == []
    assert pair.client.state is ConnState.OPEN
    # The connection goes on.
    pair.to_server(Call(2, "n", "m"))
    assert pair.to_client(Result(2, "ok")) == [Result(2, "ok")]


def test_late_frames_from_the_client_are_dropped_too(pair: ConnectionPair) -> None:
    pair.to_server(OpenStream(1, "n", "m"))
    pair.server.send(Error(1, ERROR_PAYLOAD))  # crosses the client's data on the wire
    for late in (Data(1, b"x"), WindowUpdate(1, 5), Cancel(1)):
        assert deliver(pair.client.send(late), pair.server) == []
    assert pair.server.state is ConnState.OPEN


def test_a_dropped_late_frame_does_not_hide_the_frames_behind_it(pair: ConnectionPair) -> None:
    """Regression: next_event used to return NEED_DATA for the dropped frame, and the frames
    behind it waited for the next read (tests/test_serve.py hung on this)."""
    pair.to_server(Call(1, "n", "endless"))
    pair.to_server(Call(2, "n", "echo"))
    pair.client.send(Cancel(1))
    in_flight = encode_event(Item(1, "late")) + pair.server.send(Result(2, "answer"))
    pair.client.receive_data(in_flight)
    assert pair.client.next_event() == Result(2, "answer")
    assert pair.client.next_event() is NEED_DATA


def test_a_call_ignored_after_goaway_does_not_hide_the_frames_behind_it(
    pair: ConnectionPair,
) -> None:
    pair.to_server(Call(1, "n", "m"))
    pair.server.send(GoAway())
    pair.server.receive_data(pair.client.send(Call(2, "n", "m")) + pair.client.send(Cancel(1)))
    assert pair.server.next_event() == Cancel(1)


# -- stream ids -------------------------------------------------------------------------------


def test_stream_ids_must_increase(pair: ConnectionPair) -> None:
    assert pair.client.next_stream_id() == 1
    pair.to_server(Call(1, "n", "m"))
    pair.to_server(Call(5, "n", "m"))  # gaps are allowed
    assert pair.client.next_stream_id() == pair.server.next_stream_id() == 6
    with pytest.raises(
        LocalProtocolError, match="client may not send Call with stream id 3, which is not new"
    ):
        pair.client.send(Call(3, "n", "m"))
    assert_in_error(pair.client)


def test_a_reused_stream_id_is_refused_even_after_the_stream_ended(pair: ConnectionPair) -> None:
    pair.to_server(Call(1, "n", "m"))
    pair.to_client(Result(1))
    with pytest.raises(LocalProtocolError, match="stream id 1, which is not new"):
        pair.client.send(OpenStream(1, "n", "m"))


def test_the_server_refuses_a_stream_id_that_does_not_increase(pair: ConnectionPair) -> None:
    pair.to_server(Call(2, "n", "m"))
    with pytest.raises(
        RemoteProtocolError, match="may not receive Call with stream id 2, which is not new"
    ):
        deliver(encode_event(Call(2, "n", "m")), pair.server)
    assert_in_error(pair.server)


def test_frames_for_a_stream_never_opened(pair: ConnectionPair) -> None:
    with pytest.raises(RemoteProtocolError, match="on stream 7, which was never opened"):
        deliver(encode_event(Result(7, None)), pair.client)
    assert_in_error(pair.client)
    fresh = ConnectionPair().handshake()
    with pytest.raises(LocalProtocolError, match="on stream 3, which was never opened"):
        fresh.client.send(Cancel(3))


# -- illegal transitions ----------------------------------------------------------------------


def _fresh() -> ConnectionPair:
    return ConnectionPair()


def _open() -> ConnectionPair:
    return ConnectionPair().handshake()


def _with_call() -> ConnectionPair:
    pair = ConnectionPair().handshake()
    pair.to_server(Call(1, "n", "m"))
    return pair


def _with_bytes() -> ConnectionPair:
    pair = ConnectionPair().handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    return pair


ILLEGAL_SENDS = [
    # (setup, sender, event, words the message must contain)
    (_fresh, "client", Call(1, "n", "m"), ["client", "send", "Call", "START"]),
    (_fresh, "client", Ping(), ["client", "send", "Ping", "START"]),
    (_fresh, "client", GoAway(), ["client", "send", "GoAway", "START"]),
    (_fresh, "server", Hello(1), ["server", "send", "Hello", "START"]),
    (_fresh, "server", Result(1), ["server", "send", "Result", "START"]),
    (_open, "client", Hello(1), ["client", "send", "Hello", "OPEN"]),
    (_open, "server", Hello(1), ["server", "send", "Hello", "OPEN"]),
    (_open, "server", Call(1, "n", "m"), ["server", "send", "Call"]),
    (_open, "server", OpenStream(1, "n", "m"), ["server", "send", "OpenStream"]),
    (_with_call, "server", Cancel(1), ["server", "send", "Cancel"]),
    (_with_call, "client", Result(1), ["client", "send", "Result"]),
    (_with_call, "client", Item(1, 0), ["client", "send", "Item"]),
    (_with_call, "client", Error(1, {}), ["client", "send", "Error"]),
    (_with_call, "client", Data(1, b"x"), ["client", "send", "Data", "call stream"]),
    (_with_call, "server", Data(1, b"x"), ["server", "send", "Data", "call stream"]),
    (_with_bytes, "server", Item(1, 0), ["server", "send", "Item", "bytes stream"]),
]


@pytest.mark.parametrize(
    ("setup", "sender", "event", "words"),
    ILLEGAL_SENDS,
    ids=[f"{s.__name__[1:]}-{who}-{type(e).__name__}" for s, who, e, _ in ILLEGAL_SENDS],
)
def test_illegal_sends_raise_local_protocol_error_and_leave_error(
    setup: Callable[[], ConnectionPair], sender: str, event: Event, words: list[str]
) -> None:
    conn = getattr(setup(), sender)
    with pytest.raises(LocalProtocolError) as info:
        conn.send(event)
    for word in words:
        assert word in str(info.value)
    assert_in_error(conn)


ILLEGAL_RECEIVES = [
    # (setup, receiver, event, words the message must contain)
    (_fresh, "server", Call(1, "n", "m"), ["Call", "START"]),
    (_fresh, "server", Ping(), ["Ping", "START"]),
    (_fresh, "server", GoAway(), ["GoAway", "START"]),
    (_fresh, "client", Hello(1), ["Hello", "START"]),
    (_open, "server", Hello(1), ["Hello", "OPEN"]),
    (_open, "client", Hello(1), ["Hello", "OPEN"]),
    (_open, "client", Call(1, "n", "m"), ["server may not send Call"]),
    (_open, "client", Cancel(1), ["server may not send Cancel"]),
    (_with_call, "server", Result(1), ["client may not send Result"]),
    (_with_call, "server", Error(1, {}), ["client may not send Error"]),
    (_with_call, "client", Data(1, b"x"), ["Data", "call stream"]),
    (_with_bytes, "client", Item(1, 0), ["Item", "bytes stream"]),
]


@pytest.mark.parametrize(
    ("setup", "receiver", "event", "words"),
    ILLEGAL_RECEIVES,
    ids=[f"{s.__name__[1:]}-{who}-{type(e).__name__}" for s, who, e, _ in ILLEGAL_RECEIVES],
)
def test_illegal_receives_raise_remote_protocol_error_and_leave_error(
    setup: Callable[[], ConnectionPair], receiver: str, event: Event, words: list[str]
) -> None:
    conn = getattr(setup(), receiver)
    conn.receive_data(encode_event(event))
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    for word in words:
        assert word in str(info.value)
    assert_in_error(conn)


def test_illegal_send_message_names_role_event_and_state() -> None:
    client = Connection(Role.CLIENT)
    client.send(client.hello())
    with pytest.raises(LocalProtocolError) as info:
        client.send(Call(1, "n", "m"))
    assert str(info.value) == "client may not send Call in connection state HELLO_SENT"


def test_illegal_receive_message_names_the_receiving_role() -> None:
    server = Connection(Role.SERVER)
    server.receive_data(encode_event(Call(1, "n", "m")))
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert str(info.value) == "server may not receive Call in connection state START"


def test_protocol_errors_share_a_base() -> None:
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)


def test_an_unencodable_value_fails_that_send_only(pair: ConnectionPair) -> None:
    pair.to_server(Call(1, "n", "m"))
    with pytest.raises(LocalProtocolError, match="value cannot be sent"):
        pair.server.send(Result(1, object()))
    assert pair.server.state is ConnState.OPEN and pair.server.is_live(1)
    assert pair.to_client(Error(1, ERROR_PAYLOAD)) == [Error(1, ERROR_PAYLOAD)]


def test_a_frame_over_the_peers_limit_cannot_be_sent() -> None:
    pair = ConnectionPair(client_max_frame=1000).handshake()
    pair.to_server(Call(1, "n", "m"))
    with pytest.raises(LocalProtocolError, match="exceeds the peer's limit of 1000"):
        pair.server.send(Result(1, b"x" * 2000))


def test_a_frame_over_the_peers_limit_fails_that_send_only() -> None:
    pair = ConnectionPair(client_max_frame=1000).handshake()
    pair.to_server(Call(1, "n", "m"))
    with pytest.raises(LocalProtocolError):
        pair.server.send(Result(1, b"x" * 2000))
    assert pair.server.state is ConnState.OPEN and pair.server.is_live(1)
    assert pair.to_client(Error(1, ERROR_PAYLOAD)) == [Error(1, ERROR_PAYLOAD)]


# -- flow control -----------------------------------------------------------------------------
#
# Windows count whole DATA and ITEM frames, header included (``cost``); a call stream gets
# ``window // CALL_WINDOW_SHARE``, a byte stream the whole window.


def cost(event: Event) -> int:
    """What ``event`` takes from a flow-control window."""
    return len(encode_event(event))


def test_window_accounting_constants() -> None:
    assert HEADER_SIZE == 10
    assert cost(Data(1, b"x" * 90)) == 100
    assert CALL_WINDOW_SHARE >= 1


def test_the_sender_cannot_send_past_its_window() -> None:
    pair = ConnectionPair(client_window=1000).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    server = pair.server
    assert server.send_window(1) == 1000
    first = Data(1, b"x" * 600)
    pair.to_client(first)
    assert server.send_window(1) == 1000 - cost(first)
    pair.to_client(first)  # the window is still positive: one frame may overdraw it
    assert server.send_window(1) == 1000 - 2 * cost(first) < 0
    assert server.send(Data(1, b"")) != b""  # a frame without payload is never refused
    with pytest.raises(LocalProtocolError, match="stream 1: send window exhausted"):
        server.send(Data(1, b"x"))
    assert_in_error(server)


def test_an_end_flag_may_be_sent_with_the_window_exhausted() -> None:
    pair = ConnectionPair(server_window=100).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    pair.to_server(Data(1, b"x" * 100))
    assert pair.client.send_window(1) <= 0
    assert pair.to_server(Data(1, b"", end=True)) == [Data(1, b"", end=True)]
    assert pair.server.state is ConnState.OPEN


def test_window_update_reopens_the_window() -> None:
    pair = ConnectionPair(client_window=100).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    pair.to_client(Data(1, b"x" * 200))
    assert pair.server.send_window(1) == 100 - 210
    assert pair.to_server(WindowUpdate(1, 300)) == [WindowUpdate(1, 300)]
    assert pair.server.send_window(1) == 190
    assert pair.to_client(Data(1, b"more")) == [Data(1, b"more")]


def test_send_window_of_an_unknown_stream_is_zero(pair: ConnectionPair) -> None:
    assert pair.client.send_window(99) == 0


def test_call_streams_get_a_share_of_the_window() -> None:
    pair = ConnectionPair(client_window=16000, server_window=32000).handshake()
    pair.to_server(Call(1, "n", "m"))
    pair.to_server(OpenStream(2, "n", "m"))
    assert pair.server.send_window(1) == 16000 // CALL_WINDOW_SHARE
    assert pair.server.send_window(2) == 16000
    assert pair.client.send_window(2) == 32000


def test_items_count_against_the_window() -> None:
    pair = ConnectionPair(client_window=400 * CALL_WINDOW_SHARE).handshake()
    pair.to_server(Call(1, "n", "m"))
    item = Item(1, b"x" * 100)
    pair.to_client(item)
    assert pair.server.send_window(1) == 400 - cost(item)
    update = pair.client.ack_item(1)  # the connection remembers each item's size
    assert pair.client.ack_item(1) == b""  # one item, acknowledged once
    assert deliver(update, pair.server) == [WindowUpdate(1, cost(item))]


def test_the_receiver_tolerates_one_overdrawing_frame() -> None:
    """The receiver accepts up to ``window + max_frame + header`` unacknowledged bytes."""
    pair = ConnectionPair(server_window=100, server_max_frame=100).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    frames = encode_event(Data(1, b"x" * 89)) + encode_event(Data(1, b"x" * 100))
    assert len(deliver(frames, pair.server)) == 2  # the sender's window was 1 before the 2nd
    assert pair.server.state is ConnState.OPEN


def test_the_receiver_refuses_a_peer_that_overruns_its_window() -> None:
    """Raw frames: a well-behaved client Connection would refuse to send the last one."""
    pair = ConnectionPair(server_window=100, server_max_frame=100).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    frames = encode_event(Data(1, b"x" * 90)) + encode_event(Data(1, b"x" * 100))
    assert len(deliver(frames, pair.server)) == 2  # 210 = window + max_frame + header
    with pytest.raises(RemoteProtocolError, match="stream 1: peer overran its window"):
        deliver(encode_event(Data(1, b"")), pair.server)  # even an empty frame counts
    assert_in_error(pair.server)


def test_the_receiver_refuses_items_that_overrun_the_window() -> None:
    pair = ConnectionPair(client_window=100 * CALL_WINDOW_SHARE, client_max_frame=100).handshake()
    pair.to_server(Call(1, "n", "m"))
    item = encode_event(Item(1, b"x" * 50))
    deliver(item * 3, pair.client)  # 3 * 61 = 183 <= 100 + 100 + 10
    with pytest.raises(RemoteProtocolError, match="peer overran its window"):
        deliver(item, pair.client)


def test_a_flood_of_empty_frames_is_bounded_too() -> None:
    """Headers count, so zero-length frames cannot be sent without limit."""
    pair = ConnectionPair(server_window=100, server_max_frame=100).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    with pytest.raises(RemoteProtocolError, match="peer overran its window"):
        deliver(encode_event(Data(1, b"")) * 22, pair.server)


def test_ack_data_emits_a_window_frame_once_a_quarter_is_consumed() -> None:
    pair = ConnectionPair(server_window=1000).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    data = Data(1, b"x" * 590)
    pair.to_server(data)
    assert pair.client.send_window(1) == 1000 - cost(data)
    assert pair.server.ack_data(1, 100) == b""
    assert pair.server.ack_data(1, 149) == b""
    update = pair.server.ack_data(1, 1)  # 250 = 1000 // 4
    assert update == encode_event(WindowUpdate(1, 250))
    assert deliver(update, pair.client) == [WindowUpdate(1, 250)]
    assert pair.client.send_window(1) == 1000 - cost(data) + 250
    assert pair.server.ack_data(1, 249) == b""  # the count starts again


def test_ack_data_credit_lets_the_peer_send_on_forever() -> None:
    pair = ConnectionPair(server_window=1000, server_max_frame=1000).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    for _ in range(200):
        pair.to_server(Data(1, b"x" * 300))
        deliver(pair.server.ack_data(1, 300, frames=1), pair.client)
    assert pair.server.state is pair.client.state is ConnState.OPEN
    assert pair.client.send_window(1) > 0


@pytest.mark.parametrize(
    ("stream_id", "consumed"), [(99, 1000), (1, 0), (1, -5)], ids=["unknown", "zero", "negative"]
)
def test_ack_data_ignores_nothing_to_ack(stream_id: int, consumed: int) -> None:
    pair = ConnectionPair(server_window=4).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    assert pair.server.ack_data(stream_id, consumed) == b""


def test_ack_data_after_the_peers_end_sends_nothing() -> None:
    pair = ConnectionPair(server_window=4).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    pair.to_server(Data(1, b"xxxx", end=True))
    assert pair.server.ack_data(1, 14) == b""


def test_a_streaming_call_can_be_acknowledged() -> None:
    pair = ConnectionPair(client_window=400 * CALL_WINDOW_SHARE).handshake()
    pair.to_server(Call(1, "n", "count"))
    consumed = 0
    for _ in range(4):
        item = Item(1, b"x" * 90)
        pair.to_client(item)
        consumed += cost(item)
    assert pair.server.send_window(1) == 400 - consumed
    update = b"".join(pair.client.ack_item(1) for _ in range(4))
    assert pair.client.ack_item(1) == b""  # nothing left to acknowledge
    assert sum(e.increment for e in deliver(update, pair.server)) == consumed
    assert pair.server.send_window(1) == 400


def test_a_window_update_sent_by_hand_is_honoured_by_the_receiver() -> None:
    pair = ConnectionPair(server_window=100, server_max_frame=100).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    for _ in range(5):
        data = Data(1, b"x" * 90)
        pair.to_server(data)
        pair.to_client(WindowUpdate(1, cost(data)))
    assert pair.server.state is ConnState.OPEN


# -- send_parts (DATA without joining header and payload) --------------------------------------


def test_send_parts_is_send_without_the_join() -> None:
    joined, parts = (
        ConnectionPair(client_window=1000).handshake(),
        ConnectionPair(client_window=1000).handshake(),
    )
    for pair in (joined, parts):
        pair.to_server(OpenStream(1, "n", "m"))
    payload = memoryview(b"0123456789" * 30)
    for event in (Data(1, payload), Data(1, b""), Data(1, payload, end=True)):
        data = joined.server.send(event)
        pieces = parts.server.send_parts(event)
        assert pieces[-1] is event.data  # the payload itself, not a copy
        assert b"".join(pieces) == data
        assert deliver(b"".join(pieces), parts.client) == deliver(data, joined.client)
        assert parts.server.send_window(1) == joined.server.send_window(1)
    assert parts.server.is_live(1) is joined.server.is_live(1) is True


def test_send_parts_follows_the_same_rules() -> None:
    pair = ConnectionPair(client_window=100, client_max_frame=200).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    pair.server.send_parts(Data(1, b"x" * 150))
    assert pair.server.send_window(1) == 100 - 160
    with pytest.raises(LocalProtocolError, match="send window exhausted"):
        pair.server.send_parts(Data(1, b"x"))
    assert_in_error(pair.server)


def test_send_parts_for_an_ended_stream_sends_nothing(pair: ConnectionPair) -> None:
    pair.to_server(OpenStream(1, "n", "m"))
    pair.to_server(Cancel(1))
    assert pair.server.send_parts(Data(1, b"late")) == []


def test_send_parts_refuses_a_frame_over_the_peers_limit() -> None:
    pair = ConnectionPair(client_max_frame=100).handshake()
    pair.to_server(OpenStream(1, "n", "m"))
    with pytest.raises(LocalProtocolError, match="exceeds the peer's limit of 100"):
        pair.server.send_parts(Data(1, b"x" * 101))


# -- keepalive --------------------------------------------------------------------------------


def test_ping_and_pong_both_ways(pair: ConnectionPair) -> None:
    assert pair.to_server(Ping(b"01234567")) == [Ping(b"01234567")]
    assert pair.to_client(Pong(b"01234567")) == [Pong(b"01234567")]
    assert pair.to_client(Ping(b"abcdefgh")) == [Ping(b"abcdefgh")]
    assert pair.to_server(Pong(b"abcdefgh")) == [Pong(b"abcdefgh")]
    assert pair.client.state is pair.server.state is ConnState.OPEN


def test_no_ping_before_the_handshake_completes() -> None:
    pair = ConnectionPair()
    pair.to_server(pair.client.hello())
    with pytest.raises(
        LocalProtocolError, match="server may not send Ping in connection state HELLO_RECEIVED"
    ):
        pair.server.send(Ping())


# -- GoAway -----------------------------------------------------------------------------------


def test_goaway_moves_both_sides_to_closing(pair: ConnectionPair) -> None:
    assert pair.to_server(GoAway()) == [GoAway("normal", "")]
    assert pair.client.state is pair.server.state is ConnState.CLOSING
    assert pair.to_client(GoAway("normal", "bye")) == [GoAway("normal", "bye")]
    assert pair.client.state is pair.server.state is ConnState.CLOSING


def test_streams_in_flight_finish_after_goaway(pair: ConnectionPair) -> None:
    pair.to_server(Call(1, "n", "m"))
    pair.to_server(OpenStream(2, "n", "m"))
    pair.to_client(GoAway())
    assert pair.to_client(Item(1, "i")) == [Item(1, "i")]
    assert pair.to_client(Result(1, "done")) == [Result(1, "done")]
    assert pair.to_server(Data(2, b"x", end=True)) == [Data(2, b"x", end=True)]
    assert pair.to_client(Data(2, b"y", end=True)) == [Data(2, b"y", end=True)]
    assert pair.to_server(Ping()) == [Ping()]
    assert pair.client.streams == pair.server.streams == 0


def test_after_goaway_new_streams_are_refused_locally(pair: ConnectionPair) -> None:
    pair.to_client(GoAway())
    with pytest.raises(
        LocalProtocolError, match="client may not send Call in connection state CLOSING"
    ):
        pair.client.send(Call(1, "n", "m"))


def test_after_goaway_new_streams_are_ignored_remotely(pair: ConnectionPair) -> None:
    pair.server.send(GoAway())  # crosses the client's call on the wire
    assert pair.to_server(Call(1, "n", "m")) == []
    assert pair.to_server(OpenStream(2, "n", "m")) == []
    assert pair.server.state is ConnState.CLOSING
    assert pair.server.streams == 0
    # The ignored ids are used up all the same.
    with pytest.raises(RemoteProtocolError, match="not new"):
        deliver(encode_event(Call(2, "n", "m")), pair.server)


def test_goaway_during_the_handshake_refuses_the_client() -> None:
    pair = ConnectionPair()
    pair.to_server(pair.client.hello(token="wrong"))
    refusal = GoAway("unauthenticated", "bad token")
    assert pair.to_client(refusal) == [refusal]
    assert pair.client.state is pair.server.state is ConnState.CLOSING


# -- end of transport -------------------------------------------------------------------------


@pytest.mark.parametrize("handshaken", [False, True])
def test_receive_data_empty_means_connection_closed(handshaken: bool) -> None:
    pair = ConnectionPair().handshake() if handshaken else ConnectionPair()
    pair.server.receive_data(b"")
    assert pair.server.next_event() == ConnectionClosed()
    assert pair.server.state is ConnState.CLOSED
    assert pair.server.next_event() is NEED_DATA
    assert pair.server.next_event() is NEED_DATA


def test_connection_closed_in_closing_state(pair: ConnectionPair) -> None:
    pair.to_server(GoAway())
    assert deliver(b"", pair.server) == [ConnectionClosed()]
    assert pair.server.state is ConnState.CLOSED


def test_nothing_can_be_sent_on_a_closed_connection(pair: ConnectionPair) -> None:
    pair.to_server(Call(1, "n", "m"))
    deliver(b"", pair.server)
    with pytest.raises(LocalProtocolError, match="in connection state CLOSED"):
        pair.server.send(Result(1, "orphan"))
