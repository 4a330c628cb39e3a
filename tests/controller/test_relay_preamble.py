"""The relay preamble codec (sans-IO): round trips, and errors that say what was wrong."""

from __future__ import annotations

import pytest

from tether.errors import AuthenticationFailed, RelayRefused, RemoteProtocolError
from tether.wire._relay import (
    MAX_RELAY_LINE,
    RelayHello,
    RelayReply,
    decode_relay_hello,
    decode_relay_reply,
    encode_relay_hello,
    encode_relay_reply,
    refusal_error,
    relay_url_for,
    split_line,
)


def test_hello_round_trips_and_hides_the_token_in_repr() -> None:
    hello = RelayHello("lease-1", "exporter", "tth_secret")
    line, rest = split_line(encode_relay_hello(hello), "x") or (b"", b"")
    assert rest == b""
    assert decode_relay_hello(line) == hello
    assert "tth_secret" not in repr(hello)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"HELLO", "expected a line starting with 'TETHER-RELAY/2'"),
        (b"TETHER-RELAY/2 {nope", "invalid JSON"),
        (b"TETHER-RELAY/2 [1]", "expected a JSON object"),
        (b'TETHER-RELAY/2 {"lease": "a", "role": "client"}', "['token']"),
        (b'TETHER-RELAY/2 {"lease": "", "role": "client", "token": "t"}', "lease must not be"),
        (b'TETHER-RELAY/2 {"lease": "a", "role": "admin", "token": "t"}', "'admin'"),
    ],
)
def test_bad_hellos_are_named(line: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError, match="relay preamble") as info:
        decode_relay_hello(line)
    assert message in str(info.value)


def test_an_exporter_hello_carries_its_certificate_digest() -> None:
    hello = RelayHello("lease-1", "exporter", "tth_secret", cert="ab" * 32)
    line, _ = split_line(encode_relay_hello(hello), "x") or (b"", b"")
    assert decode_relay_hello(line).cert == "ab" * 32
    with pytest.raises(RemoteProtocolError, match="SHA-256"):
        decode_relay_hello(line.replace(b"ab" * 32, b"AB" * 32))
    with pytest.raises(RemoteProtocolError, match="'cert' must be a string"):
        decode_relay_hello(line.replace(b'"' + b"ab" * 32 + b'"', b"7"))


def test_split_line_waits_for_the_newline_and_bounds_the_line() -> None:
    assert split_line(b"abc", "x") is None
    assert split_line(b"abc\ndef", "x") == (b"abc", b"def")
    with pytest.raises(RemoteProtocolError, match="longer than"):
        split_line(b"a" * MAX_RELAY_LINE, "x")


def test_replies_round_trip() -> None:
    paired = RelayReply(ok=True, state="paired", info={"exporter": "bench-1"})
    assert decode_relay_reply(encode_relay_reply(paired).strip()) == paired
    refused = RelayReply(ok=False, code="lease_ended", message="gone")
    assert decode_relay_reply(encode_relay_reply(refused).strip()) == refused
    with pytest.raises(RemoteProtocolError, match="'ok'"):
        decode_relay_reply(b'{"state": "paired"}')


def test_refusals_map_to_errors() -> None:
    bad_token = refusal_error(RelayReply(ok=False, code="unauthenticated", message="no"), "r")
    assert isinstance(bad_token, AuthenticationFailed)
    ended = refusal_error(RelayReply(ok=False, code="lease_ended", message="over"), "r")
    assert isinstance(ended, RelayRefused) and ended.code == "lease_ended"
    assert "over" in str(ended)


def test_a_wildcard_relay_host_becomes_the_controller_host() -> None:
    assert relay_url_for("tls://0.0.0.0:8444", "https://ctl.lab:8443") == "tls://ctl.lab:8444"
    assert relay_url_for("tls://[::]:8444", "https://[fd00::1]:8443") == "tls://[fd00::1]:8444"
    assert relay_url_for("tls://relay.lab:8444", "https://ctl.lab") == "tls://relay.lab:8444"


def test_a_client_hello_may_name_the_exporter_it_wants() -> None:
    hello = RelayHello("lease-1", "client", "tth_secret", exporter="host-1")
    line, _ = split_line(encode_relay_hello(hello), "x") or (b"", b"")
    assert decode_relay_hello(line) == hello
    plain, _ = split_line(encode_relay_hello(RelayHello("l", "client", "t")), "x") or (b"", b"")
    assert b"exporter" not in plain  # absent when not named: old routers see the old line
    with pytest.raises(RemoteProtocolError, match="'exporter' must be a string"):
        decode_relay_hello(line.replace(b'"host-1"', b"[1]"))
