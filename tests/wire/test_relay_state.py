"""The relay handshake machine (``tether.wire.RelayDialer`` / ``RelayAcceptor``): both ends of a
relay connection walk one transition table; bytes fed one at a time; illegal moves name role,
state and event; and the module is sans-IO."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tether.wire
from tether.errors import (
    AuthenticationFailed,
    ConnectFailed,
    LocalProtocolError,
    ProtocolError,
    RelayRefused,
    RemoteProtocolError,
)
from tether.wire import (
    RELAY_TRANSITIONS,
    RelayAcceptor,
    RelayDialer,
    RelayHello,
    RelayInput,
    RelayPaired,
    RelayRole,
    RelayState,
    RelayWaiting,
)

CERT = "ab" * 32


def feed_bytewise(machine: RelayDialer, data: bytes) -> list[object]:
    events: list[object] = []
    for index in range(len(data)):
        events += machine.receive_data(data[index : index + 1])
    return events


def hello_of(router: RelayAcceptor, data: bytes) -> RelayHello | None:
    found = None
    for index in range(len(data)):
        found = router.receive_data(data[index : index + 1]) or found
    return found


@pytest.mark.parametrize("tls", [False, True])
def test_client_exporter_and_router_agree_byte_by_byte(tls: bool) -> None:
    exporter = RelayDialer(
        RelayHello("L1", "exporter", "t-e", CERT if tls else ""), tls=tls, where="r"
    )
    client = RelayDialer(RelayHello("L1", "client", "t-c"), tls=tls, where="r")
    for_exporter, for_client = RelayAcceptor(tls=tls), RelayAcceptor(tls=tls)

    hello = hello_of(for_exporter, exporter.hello_bytes())
    assert (
        hello is not None
        and hello.role == "exporter"
        and for_exporter.state is RelayState.AUTHORIZING
    )
    assert feed_bytewise(exporter, for_exporter.accept()) == [RelayWaiting()]
    assert (exporter.state, for_exporter.state) == (RelayState.WAITING, RelayState.WAITING)

    assert hello_of(for_client, client.hello_bytes()) == RelayHello("L1", "client", "t-c")
    assert for_client.accept() == b"" and for_client.state is RelayState.PAIRING
    # the client's Hello racing the pairing (plain TCP only: over TLS it is refused)
    if not tls:
        assert for_client.receive_data(b"early") is None and for_client.early == b"early"

    after = RelayState.UNWRAPPING if tls else RelayState.SPLICED
    events = feed_bytewise(exporter, for_exporter.pair({"client": "alice"}))
    assert [type(e) for e in events] == [RelayPaired] and exporter.state is after
    info = {"exporter": "bench-1", "cert_sha256": CERT} if tls else {"exporter": "bench-1"}
    paired = feed_bytewise(client, for_client.pair(info))
    assert isinstance(paired[0], RelayPaired) and paired[0].reply.info["exporter"] == "bench-1"
    assert client.state is after and for_client.state is after
    if tls:
        assert client.expected_cert == CERT
        for machine in (client, exporter, for_client, for_exporter):
            machine.tls_ended()
    else:
        assert for_client.take_early() == b"early"
    assert {m.state for m in (client, exporter, for_client, for_exporter)} == {RelayState.SPLICED}


def test_an_exporter_gets_the_wire_protocol_bytes_read_with_the_paired_line() -> None:
    exporter = RelayDialer(RelayHello("L1", "exporter", "t"), tls=False, where="r")
    exporter.hello_bytes()
    router = RelayAcceptor(tls=False)
    router.receive_data(
        RelayDialer(RelayHello("L1", "exporter", "t"), tls=False, where="r").hello_bytes()
    )
    batch = router.accept() + router.pair({}) + b"\x00HELLO"
    events = exporter.receive_data(batch)
    assert events[0] == RelayWaiting()
    assert isinstance(events[1], RelayPaired) and events[1].leftover == b"\x00HELLO"


@pytest.mark.parametrize(
    ("code", "error"), [("unauthenticated", AuthenticationFailed), ("lease_ended", RelayRefused)]
)
def test_a_refusal_raises_the_routers_reason_and_ends_in_refused(code: str, error: type) -> None:
    router = RelayAcceptor(tls=False)
    client = RelayDialer(RelayHello("L1", "client", "t"), tls=False, where="relay tcp://x:1")
    router.receive_data(client.hello_bytes())
    with pytest.raises(error, match="relay tcp://x:1: relay refused the connection: nope") as info:
        client.receive_data(router.refuse(code, "nope"))
    assert client.state is RelayState.REFUSED and router.state is RelayState.REFUSED
    if code == "lease_ended":
        assert info.value.code == "lease_ended"


def test_illegal_moves_name_role_state_and_event() -> None:
    client = RelayDialer(RelayHello("L1", "client", "t"), tls=False, where="r")
    with pytest.raises(
        RemoteProtocolError, match="relay client: cannot receive 'waiting' in state HELLO_SENT"
    ):
        client.hello_bytes()
        client.receive_data(b'{"ok": true, "state": "waiting"}\n')
    router = RelayAcceptor(tls=False)
    with pytest.raises(
        LocalProtocolError, match="relay router: cannot send 'paired' in state START"
    ):
        router.pair({})
    exporter = RelayDialer(RelayHello("L1", "exporter", "t"), tls=False, where="r")
    with pytest.raises(LocalProtocolError, match="relay exporter: cannot TLS ended in state START"):
        exporter.tls_ended()


def test_bytes_where_none_may_come_are_the_peers_error() -> None:
    # Over TLS, nothing may follow "paired" inside the router's TLS...
    client = RelayDialer(RelayHello("L1", "client", "t"), tls=True, where="r")
    client.hello_bytes()
    with pytest.raises(RemoteProtocolError, match="unexpected bytes after the relay's 'paired'"):
        client.receive_data(
            b'{"ok": true, "state": "paired", "cert_sha256": "' + CERT.encode() + b'"}\nX'
        )
    # ...a TLS client needs the exporter's digest to pin...
    bare = RelayDialer(RelayHello("L1", "client", "t"), tls=True, where="r")
    bare.hello_bytes()
    with pytest.raises(RemoteProtocolError, match="names no exporter certificate"):
        bare.receive_data(b'{"ok": true, "state": "paired"}\n')
    # ...and the router refuses bytes after a TLS preamble, or an exporter with no cert.
    router = RelayAcceptor(tls=True)
    with pytest.raises(RemoteProtocolError, match="bytes after the preamble"):
        router.receive_data(
            RelayDialer(RelayHello("L", "client", "t"), tls=True, where="r").hello_bytes() + b"x"
        )
    assert router.state is RelayState.AUTHORIZING
    assert router.refuse("bad_preamble", "x").startswith(b'{"ok":false')
    with pytest.raises(RemoteProtocolError, match="must name its 'cert'"):
        RelayAcceptor(tls=True).receive_data(
            RelayDialer(RelayHello("L", "exporter", "t"), tls=False, where="r").hello_bytes()
        )
    with pytest.raises(RemoteProtocolError, match="expected a line starting with"):
        RelayAcceptor(tls=False).receive_data(b"GET / HTTP/1.1\r\n")


def test_close_is_allowed_from_every_live_state_and_once() -> None:
    for role in RelayRole:
        for state in RelayState:
            expected = None if state is RelayState.CLOSED else RelayState.CLOSED
            assert RELAY_TRANSITIONS.get((role, state, RelayInput.CLOSE)) is expected
    router = RelayAcceptor(tls=False)
    router.close()
    router.close()
    assert router.state is RelayState.CLOSED


def test_the_machine_is_sans_io() -> None:
    source = Path(tether.wire.__file__).with_name("_relay_state.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert not imported & {"asyncio", "socket", "ssl", "selectors", "threading"}


# -- property tests ---------------------------------------------------------------------------


@given(st.lists(st.binary(max_size=64), max_size=8), st.booleans())
def test_garbage_to_the_router_is_refused_as_a_protocol_error_or_waits(
    chunks: list[bytes], tls: bool
) -> None:
    router = RelayAcceptor(tls=tls)
    try:
        for chunk in chunks:
            router.receive_data(chunk)
    except RemoteProtocolError:
        assert router.refuse("bad_preamble", "x").startswith(b'{"ok":false')
        assert router.state is RelayState.REFUSED


@given(st.lists(st.binary(max_size=64), max_size=8), st.sampled_from(["client", "exporter"]))
def test_garbage_to_a_dialer_is_a_protocol_error_or_a_refusal(
    chunks: list[bytes], role: str
) -> None:
    dialer = RelayDialer(RelayHello("L1", role, "t"), tls=False, where="r")  # type: ignore[arg-type]
    dialer.hello_bytes()
    try:
        for chunk in chunks:
            dialer.receive_data(chunk)
    except (ProtocolError, ConnectFailed):
        pass


@given(st.data())
def test_any_split_of_a_conversation_gives_the_same_events(data: st.DataObject) -> None:
    router = RelayAcceptor(tls=False)
    hello = RelayDialer(RelayHello("L1", "exporter", "t"), tls=False, where="r").hello_bytes()
    stream = hello
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    pieces = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    found = [router.receive_data(piece) for piece in pieces]
    assert [h for h in found if h is not None] == [RelayHello("L1", "exporter", "t")]
    exporter = RelayDialer(RelayHello("L1", "exporter", "t"), tls=False, where="r")
    exporter.hello_bytes()
    replies = router.accept() + router.pair({"client": "a"}) + b"WIRE"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(replies)), max_size=6)))
    pieces = [replies[a:b] for a, b in zip([0, *cuts], [*cuts, len(replies)], strict=True)]
    events: list[object] = []
    leftover = b""
    for piece in pieces:
        if exporter.state is RelayState.SPLICED:
            leftover += piece  # the loop hands raw bytes to the wire protocol itself
            continue
        for event in exporter.receive_data(piece):
            events.append(type(event))
            if isinstance(event, RelayPaired):
                leftover += event.leftover
    assert events == [RelayWaiting, RelayPaired] and leftover == b"WIRE"
