"""The in-memory pair helper itself: it must pump bytes faithfully or every test lies."""

from __future__ import annotations

from tether.wire import Call, ConnectionClosed, ConnState, Hello, Ping, Pong, Result

from ._pair import ConnectionPair, deliver, drain


def test_handshake_leaves_both_sides_open_with_each_others_hello() -> None:
    pair = ConnectionPair(client_window=1000, server_max_frame=2000).handshake(token="t")
    assert pair.client.state is ConnState.OPEN
    assert pair.server.state is ConnState.OPEN
    assert pair.server.peer_hello is not None
    assert pair.server.peer_hello.meta == {"window": 1000, "max_frame": 1 << 20, "token": "t"}
    assert pair.client.peer_hello == Hello(1, {"window": 4 << 20, "max_frame": 2000, "report": []})


def test_to_server_and_to_client_return_what_the_other_side_received() -> None:
    pair = ConnectionPair().handshake()
    assert pair.to_server(Call(1, "n", "m", [1], {})) == [Call(1, "n", "m", [1], {})]
    assert pair.to_client(Result(1, "v")) == [Result(1, "v")]
    assert pair.to_server(Ping(b"12345678")) == [Ping(b"12345678")]


def test_one_byte_at_a_time_gives_the_same_events() -> None:
    whole = ConnectionPair().handshake()
    bytewise = ConnectionPair(chunk=1).handshake()
    for pair in (whole, bytewise):
        assert pair.to_server(Call(1, "node", "method", ["x" * 300], {"k": b"v"})) == [
            Call(1, "node", "method", ["x" * 300], {"k": b"v"})
        ]


def test_deliver_drains_several_frames_and_eof() -> None:
    pair = ConnectionPair().handshake()
    data = pair.client.send(Ping(b"a" * 8)) + pair.client.send(Pong(b"b" * 8))
    assert deliver(data, pair.server) == [Ping(b"a" * 8), Pong(b"b" * 8)]
    assert deliver(b"", pair.server) == [ConnectionClosed()]
    assert pair.server.state is ConnState.CLOSED
    assert drain(pair.server) == []
