"""End-to-end TLS through the relay: the router copies a session it cannot read, the client
pins the exporter's certificate, and dials that break the hand-over are cut."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaylab import RelayLab
from tether import Driver, export
from tether.client import dial_relay
from tether.controller import _relay
from tether.errors import ConnectFailed
from tether.security import SessionIdentity, pinned_client_context
from tether.wire._relay import RelayHello, decode_relay_reply, encode_relay_hello
from tether.wire._tls import TLSBuffer

SECRET = "the-session-payload-4f1c9e"


class Parrot(Driver):
    @export
    def say(self, text: str) -> str:
        return text + "/" + SECRET


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RelayLab]:
    with RelayLab(tmp_path, pair_timeout=5.0) as lab:
        yield lab


def test_the_router_copies_ciphertext_only(lab: RelayLab, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []
    lock = threading.Lock()
    forward = _relay._Side._forward

    def recording_forward(side: _relay._Side, data: bytes) -> None:
        with lock:
            seen.append(bytes(data))
        forward(side, data)

    monkeypatch.setattr(_relay._Side, "_forward", recording_forward)
    lab.add_lease("L1", Parrot)
    dut = lab.connect("L1")
    assert dut.call("say", SECRET) == f"{SECRET}/{SECRET}"
    copied = b"".join(seen)
    assert len(copied) > 500  # the handshake and the call crossed the router...
    assert SECRET.encode() not in copied  # ...and it never had them in clear
    assert b"say" not in copied


def test_a_client_refuses_an_exporter_whose_certificate_was_not_announced(
    lab: RelayLab,
) -> None:
    real, other = SessionIdentity.generate(), SessionIdentity.generate()
    # The exporter presents one certificate but the router announces another's digest.
    lab.identity = SessionIdentity(real.server_context, other.cert_sha256)
    lab.add_lease("L1", Parrot)
    with pytest.raises(ConnectFailed, match="not the one the relay announced"):
        lab.connect("L1")


def _tls_dial(lab: RelayLab, hello: RelayHello, extra: bytes = b"") -> ssl.SSLSocket:
    host, port = lab.url.removeprefix("tls://").split(":")
    assert lab.client_context is not None
    raw = socket.create_connection((host, int(port)), timeout=10)
    sock = lab.client_context.wrap_socket(raw, server_hostname=host)
    sock.sendall(encode_relay_hello(hello) + extra)
    return sock


def _replies(sock: ssl.SSLSocket) -> list[bytes]:
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except (ssl.SSLError, ConnectionError):
        pass
    return [line for line in data.split(b"\n") if line]


def test_an_exporter_dial_over_tls_must_name_its_certificate(lab: RelayLab) -> None:
    lab.add_lease("L1", None)
    with _tls_dial(lab, RelayHello("L1", "exporter", "exporter-token")) as sock:
        [line] = _replies(sock)
    reply = decode_relay_reply(line)
    assert reply.code == "bad_preamble" and "'cert'" in reply.message


def test_bytes_after_the_preamble_over_tls_are_refused(lab: RelayLab) -> None:
    lab.add_lease("L1", Parrot)
    hello = RelayHello("L1", "client", "client-token")
    with _tls_dial(lab, hello, extra=b"too early") as sock:  # in the preamble's TLS record
        lines = _replies(sock)
    refusal = decode_relay_reply(lines[-1])
    assert refusal.code == "bad_preamble" and "before 'paired'" in refusal.message
    # The exporter's dial was not used up by the refused client.
    assert lab.connect("L1").call("say", "x") == f"x/{SECRET}"


def test_a_side_that_never_ends_its_tls_is_cut(lab: RelayLab) -> None:
    lab.router.preamble_timeout = 0.5
    lab.add_lease("L1", Parrot)
    with _tls_dial(lab, RelayHello("L1", "client", "client-token")) as sock:
        # Read "paired" and the router's close_notify, but never answer it.
        lines = _replies(sock)
        with socket.fromfd(sock.fileno(), socket.AF_INET, socket.SOCK_STREAM) as raw:
            raw.settimeout(10)
            assert raw.recv(1) == b""  # the router hung up (a time-out would raise)
    assert decode_relay_reply(lines[0]).state == "paired"


def test_an_exporter_that_garbles_the_hand_over_fails_only_its_client(lab: RelayLab) -> None:
    lab.add_lease("L1", None)
    cert = SessionIdentity.generate().cert_sha256
    exporter = _tls_dial(lab, RelayHello("L1", "exporter", "exporter-token", cert=cert))
    outcome: list[object] = []

    def client() -> None:
        try:
            outcome.append(
                dial_relay(lab.url, "L1", "client-token", ssl_context=lab.client_context)
            )
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=client)
    with exporter:
        assert b'"waiting"' in exporter.recv(4096)
        thread.start()
        data = b""
        while b'"paired"' not in data:
            data += exporter.recv(4096)
        # Raw garbage instead of a close_notify for the router.
        with socket.fromfd(exporter.fileno(), socket.AF_INET, socket.SOCK_STREAM) as raw:
            raw.sendall(b"\x00garbage, not TLS\r\n" * 10)
        thread.join(30)
    [error] = outcome
    assert isinstance(error, ConnectFailed) and "TLS hand-over to the exporter" in str(error)
    lab.add_lease("L2", Parrot, client_token="bob", exporter_token="e2")
    assert lab.connect("L2").call("say", "x") == f"x/{SECRET}"  # the router serves on


def _pair() -> tuple[TLSBuffer, TLSBuffer]:
    identity = SessionIdentity.generate()
    client = TLSBuffer(pinned_client_context(), server_side=False)
    server = TLSBuffer(identity.server_context, server_side=True)
    client.start()
    return client, server


def _exchange(a: TLSBuffer, b: TLSBuffer) -> tuple[bytes, bytes]:
    """Move ciphertext both ways until quiet; return the plaintext each side received."""
    got_a, got_b = b"", b""
    while True:
        to_b, to_a = a.data_to_send(), b.data_to_send()
        if not to_b and not to_a:
            return got_a, got_b
        if to_b:
            got_b += b.receive_data(to_b)
        if to_a:
            got_a += a.receive_data(to_a)


def test_tls_buffers_talk_then_unwrap_and_hand_over_the_raw_bytes() -> None:
    client, server = _pair()
    client.send(b"preamble\n")  # queued until the handshake is done
    _, at_server = _exchange(client, server)
    assert at_server == b"preamble\n"
    server.send(b"paired\n")
    server.unwrap()
    at_client, _ = _exchange(client, server)
    assert at_client == b"paired\n" and client.peer_closed and not server.unwrapped
    client.unwrap()
    assert client.unwrapped
    # The client's close_notify and the first raw bytes arrive in one read at the server.
    assert server.receive_data(client.data_to_send() + b"RAW BYTES") == b""
    assert server.unwrapped and server.raw_leftover() == b"RAW BYTES"
    with pytest.raises(RuntimeError, match="unwrapped"):
        server.receive_data(b"more")


def test_a_tls_buffer_reports_broken_tls() -> None:
    _, server = _pair()
    with pytest.raises(ssl.SSLError):
        server.receive_data(b"GET / HTTP/1.1\r\n\r\n")
