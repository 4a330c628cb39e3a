"""The router relay's preamble: the one line each dialer sends before the wire protocol starts.

Both ends of a relayed connection dial the controller's relay listener outbound. Each sends
one line, ``TETHER-RELAY/2 {json}\\n``, naming the lease, its role (``client`` or
``exporter``) and its bearer token; an exporter also names the SHA-256 of its session
certificate (``cert``). The router answers with JSON lines: ``{"ok": false, "code",
"message"}`` then closes, or ``{"ok": true, "state": "waiting"}`` (an exporter's idle dial was
accepted) and ``{"ok": true, "state": "paired", ...}`` (the client's reply carries the
exporter's ``cert_sha256``).

On a TLS relay (``tls://``, the real set-up) the preamble and the replies travel inside TLS
to the router. After ``paired`` the router sends close_notify to both sides; each answers
with its own close_notify once it has read the router's, and from then on the router copies
raw bytes: the client opens a TLS session *through* the splice to the exporter, and checks
that the exporter's certificate has the ``cert_sha256`` the router announced. The session is
encrypted end to end; the router never decrypts it. On a plain ``tcp://`` relay (tests) the
bytes after ``paired`` are the wire protocol itself.

Sans-IO: encoding and parsing only; the router (``tether.controller``), the exporter's agent and
the client do the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import msgspec

from tether.errors import AuthenticationFailed, ConnectFailed, RelayRefused, RemoteProtocolError

__all__ = [
    "MAX_RELAY_LINE",
    "RELAY_MAGIC",
    "RelayHello",
    "RelayReply",
    "decode_relay_hello",
    "decode_relay_reply",
    "encode_relay_hello",
    "encode_relay_reply",
    "is_sha256_hex",
    "refusal_error",
    "relay_url_for",
    "split_line",
    "tcp_keepalive_options",
]

RELAY_MAGIC = b"TETHER-RELAY/2 "
#: Longest preamble or reply line accepted, newline included.
MAX_RELAY_LINE = 8192

Role = Literal["client", "exporter"]
_ROLES = ("client", "exporter")


@dataclass(frozen=True, slots=True)
class RelayHello:
    """What a dialer tells the router: which lease, which side, and who it is.

    ``cert`` (exporters on a TLS relay): the SHA-256 of the certificate the exporter presents
    in the end-to-end TLS session, lower-case hex; the router tells it to the client.
    ``exporter`` (clients of a lease with several exporters): the one to be spliced to;
    empty: any of the lease's exporters.
    """

    lease: str
    role: Role
    token: str = field(repr=False)
    cert: str = ""
    exporter: str = ""

    def __post_init__(self) -> None:
        if not self.lease:
            raise ValueError("RelayHello.lease must not be empty")
        if self.role not in _ROLES:
            raise ValueError(f"RelayHello.role must be 'client' or 'exporter', not {self.role!r}")
        if self.cert and not is_sha256_hex(self.cert):
            raise ValueError("RelayHello.cert must be a SHA-256 in lower-case hex (64 digits)")


def is_sha256_hex(value: object) -> bool:
    """True for a SHA-256 digest written as 64 lower-case hex digits."""
    return (
        isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)
    )


@dataclass(frozen=True, slots=True)
class RelayReply:
    """The router's answer: refused (``ok`` false, with ``code`` and ``message``), ``waiting``
    (an exporter's idle dial) or ``paired`` (splicing starts after this line)."""

    ok: bool
    state: str = ""
    code: str = ""
    message: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def split_line(buffer: bytes | bytearray, what: str) -> tuple[bytes, bytes] | None:
    """Split one ``\\n``-terminated line off ``buffer``: ``(line, rest)``, or ``None`` when the
    line is not complete yet.

    Raises:
        RemoteProtocolError: no newline within :data:`MAX_RELAY_LINE` bytes.
    """
    end = buffer.find(b"\n", 0, MAX_RELAY_LINE)
    if end < 0:
        if len(buffer) >= MAX_RELAY_LINE:
            raise RemoteProtocolError(f"{what}: line longer than {MAX_RELAY_LINE} bytes")
        return None
    return bytes(buffer[:end]), bytes(buffer[end + 1 :])


def encode_relay_hello(hello: RelayHello) -> bytes:
    fields = {"lease": hello.lease, "role": hello.role, "token": hello.token}
    if hello.cert:
        fields["cert"] = hello.cert
    if hello.exporter:
        fields["exporter"] = hello.exporter
    return RELAY_MAGIC + msgspec.json.encode(fields) + b"\n"


def decode_relay_hello(line: bytes) -> RelayHello:
    """Parse a dialer's preamble line (without its newline).

    Raises:
        RemoteProtocolError: not a relay preamble, bad JSON, or a missing/invalid field.
    """
    if not line.startswith(RELAY_MAGIC):
        raise RemoteProtocolError(
            f"relay preamble: expected a line starting with {RELAY_MAGIC.decode().strip()!r}"
        )
    try:
        data = msgspec.json.decode(line[len(RELAY_MAGIC) :])
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"relay preamble: invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RemoteProtocolError("relay preamble: expected a JSON object")
    values = {key: data.get(key) for key in ("lease", "role", "token")}
    bad = [key for key, value in values.items() if not isinstance(value, str)]
    if bad:
        raise RemoteProtocolError(f"relay preamble: missing or non-string field(s): {bad}")
    cert = data.get("cert", "")
    if not isinstance(cert, str):
        raise RemoteProtocolError("relay preamble: 'cert' must be a string")
    exporter = data.get("exporter", "")
    if not isinstance(exporter, str):
        raise RemoteProtocolError("relay preamble: 'exporter' must be a string")
    try:
        return RelayHello(values["lease"], values["role"], values["token"], cert, exporter)  # type: ignore[arg-type]
    except ValueError as exc:
        raise RemoteProtocolError(f"relay preamble: {exc}") from None


def encode_relay_reply(reply: RelayReply) -> bytes:
    body: dict[str, Any] = {"ok": reply.ok}
    if reply.state:
        body["state"] = reply.state
    if not reply.ok:
        body["code"] = reply.code
        body["message"] = reply.message
    body.update(reply.info)
    return msgspec.json.encode(body) + b"\n"


def decode_relay_reply(line: bytes) -> RelayReply:
    """Parse a router's reply line (without its newline).

    Raises:
        RemoteProtocolError: bad JSON or no boolean ``ok``.
    """
    try:
        data = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        raise RemoteProtocolError(f"relay reply: invalid JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        raise RemoteProtocolError(f"relay reply: expected a JSON object with 'ok' (got {line!r})")
    info = {k: v for k, v in data.items() if k not in ("ok", "state", "code", "message")}
    return RelayReply(
        ok=data["ok"],
        state=str(data.get("state", "")),
        code=str(data.get("code", "")),
        message=str(data.get("message", "")),
        info=info,
    )


def refusal_error(reply: RelayReply, where: str) -> ConnectFailed:
    """The error for a refusing reply: ``AuthenticationFailed`` for a bad token, else
    ``RelayRefused`` carrying the router's code."""
    message = f"{where}: relay refused the connection: {reply.message or reply.code}"
    if reply.code == "unauthenticated":
        return AuthenticationFailed(message)
    return RelayRefused(message, code=reply.code or "forbidden")


def relay_url_for(relay: str, endpoint: str) -> str:
    """The relay URL to dial: ``relay`` as the controller advertised it, with a wildcard host
    (``0.0.0.0``, ``::``) replaced by the host of ``endpoint``, the controller URL we use."""
    scheme, sep, rest = relay.partition("://")
    host, colon, port = rest.rpartition(":")
    if not sep or not colon or host.strip("[]") not in ("0.0.0.0", "::", ""):
        return relay
    endpoint_host = urlsplit(endpoint).hostname
    if not endpoint_host:
        return relay
    if ":" in endpoint_host:
        endpoint_host = f"[{endpoint_host}]"
    return f"{scheme}://{endpoint_host}:{port}"


def tcp_keepalive_options() -> list[tuple[int, int, int]]:
    """``setsockopt`` arguments for relay sockets: TCP keepalive after 30 s idle, every 10 s,
    3 probes, so a relay connection whose peer vanished (host rebooted, NAT forgot it) is
    closed within about a minute instead of pairing a client with a dead exporter dial."""
    import socket  # this module stays importable without I/O modules for the codec

    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    return options
