"""The relay handshake as one sans-IO state machine, driven by three thin loops.

Each connection to the router relay has two ends: a *dialer* (the lease holder's client, or
the exporter's agent keeping an idle dial) and the router's *side* for it. Both ends walk the
same states, owned here as one table (:data:`RELAY_TRANSITIONS`):

====================  ============================================================
``START``             nothing said yet
``HELLO_SENT``        (dialer) the preamble is out; waiting for the router's reply
``AUTHORIZING``       (router) the preamble is in; the controller decides
``WAITING``           an exporter's dial sits in the lease's idle pool
``PAIRING``           (router) a client's dial waits for an idle exporter dial
``UNWRAPPING``        ``paired`` was said; over TLS, the TLS to the router is ending
``SPLICED``           raw bytes from here on (the wire protocol, or end-to-end TLS)
``REFUSED``           the router said no (and closes)
``CLOSED``            the connection is gone
====================  ============================================================

:class:`RelayDialer` (the blocking client's :func:`~tether.client.dial_relay` loop and the
exporter agent's asyncio dial) and :class:`RelayAcceptor` (the router's asyncio side) take
bytes in and give bytes out; they import no asyncio, socket or ssl. TLS stays with the loops
(``TLSBuffer`` is sans-IO too): these machines see only the plaintext lines, and are told when
TLS has ended (:meth:`~RelayDialer.tls_ended`). A move the table does not have raises
:class:`~tether.errors.LocalProtocolError` (we asked for it) or
:class:`~tether.errors.RemoteProtocolError` (the peer sent it), naming role, state and event.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from tether.errors import LocalProtocolError, RemoteProtocolError

from ._relay import (
    RelayHello,
    RelayReply,
    decode_relay_hello,
    decode_relay_reply,
    encode_relay_hello,
    encode_relay_reply,
    is_sha256_hex,
    refusal_error,
    split_line,
)

__all__ = [
    "RELAY_TRANSITIONS",
    "RelayAcceptor",
    "RelayDialer",
    "RelayInput",
    "RelayPaired",
    "RelayRole",
    "RelayState",
    "RelayWaiting",
]


class _Enum(Enum):
    __hash__ = object.__hash__


class RelayRole(_Enum):
    """Who runs the machine: a dialer (``CLIENT``, ``EXPORTER``) or the router's side."""

    CLIENT = "client"
    EXPORTER = "exporter"
    ROUTER = "router"


class RelayState(_Enum):
    START = "START"
    HELLO_SENT = "HELLO_SENT"
    AUTHORIZING = "AUTHORIZING"
    WAITING = "WAITING"
    PAIRING = "PAIRING"
    UNWRAPPING = "UNWRAPPING"
    SPLICED = "SPLICED"
    REFUSED = "REFUSED"
    CLOSED = "CLOSED"


class RelayInput(_Enum):
    """What moves a machine: something it sends or receives, or something its loop tells it."""

    SEND_HELLO = "send hello"
    RECEIVE_HELLO = "receive hello"
    RECEIVE_WAITING = "receive 'waiting'"
    RECEIVE_PAIRED = "receive 'paired'"
    RECEIVE_REFUSAL = "receive a refusal"
    ACCEPT_EXPORTER = "accept an exporter"
    ACCEPT_CLIENT = "accept a client"
    SEND_PAIRED = "send 'paired'"
    SEND_REFUSAL = "send a refusal"
    TLS_ENDED = "TLS ended"
    CLOSE = "close"


_S, _I, _R = RelayState, RelayInput, RelayRole

#: (role, state, input) -> next state: every legal move of both ends of a relay connection.
RELAY_TRANSITIONS: dict[tuple[RelayRole, RelayState, RelayInput], RelayState] = {
    (_R.CLIENT, _S.START, _I.SEND_HELLO): _S.HELLO_SENT,
    (_R.CLIENT, _S.HELLO_SENT, _I.RECEIVE_PAIRED): _S.UNWRAPPING,
    (_R.CLIENT, _S.HELLO_SENT, _I.RECEIVE_REFUSAL): _S.REFUSED,
    (_R.EXPORTER, _S.START, _I.SEND_HELLO): _S.HELLO_SENT,
    (_R.EXPORTER, _S.HELLO_SENT, _I.RECEIVE_WAITING): _S.WAITING,
    (_R.EXPORTER, _S.HELLO_SENT, _I.RECEIVE_REFUSAL): _S.REFUSED,
    (_R.EXPORTER, _S.WAITING, _I.RECEIVE_PAIRED): _S.UNWRAPPING,
    (_R.EXPORTER, _S.WAITING, _I.RECEIVE_REFUSAL): _S.REFUSED,
    (_R.ROUTER, _S.START, _I.RECEIVE_HELLO): _S.AUTHORIZING,
    (_R.ROUTER, _S.AUTHORIZING, _I.ACCEPT_EXPORTER): _S.WAITING,
    (_R.ROUTER, _S.AUTHORIZING, _I.ACCEPT_CLIENT): _S.PAIRING,
    (_R.ROUTER, _S.WAITING, _I.SEND_PAIRED): _S.UNWRAPPING,
    (_R.ROUTER, _S.PAIRING, _I.SEND_PAIRED): _S.UNWRAPPING,
}
for _role in RelayRole:
    RELAY_TRANSITIONS[(_role, _S.UNWRAPPING, _I.TLS_ENDED)] = _S.SPLICED
    for _state in RelayState:
        if _state is not _S.CLOSED:
            RELAY_TRANSITIONS[(_role, _state, _I.CLOSE)] = _S.CLOSED
for _state in (_S.START, _S.AUTHORIZING, _S.WAITING, _S.PAIRING):
    RELAY_TRANSITIONS[(_R.ROUTER, _state, _I.SEND_REFUSAL)] = _S.REFUSED

#: Inputs that come from the peer: an illegal one is the peer's protocol error.
_REMOTE = frozenset({_I.RECEIVE_HELLO, _I.RECEIVE_WAITING, _I.RECEIVE_PAIRED, _I.RECEIVE_REFUSAL})


@dataclass(frozen=True, slots=True)
class RelayWaiting:
    """(Exporter dials.) The router accepted the dial; it waits for the lease's client."""


@dataclass(frozen=True, slots=True)
class RelayPaired:
    """The router paired this dial. ``reply.info`` carries ``exporter`` and (over TLS, to
    the client) ``cert_sha256``; ``leftover`` holds bytes of what follows, read with the line
    (plain TCP only: the wire protocol's first bytes)."""

    reply: RelayReply
    leftover: bytes = b""


class _Machine:
    def __init__(self, role: RelayRole, tls: bool) -> None:
        self.role = role
        self.tls = tls
        self.state = RelayState.START
        self._buffer = bytearray()

    def _move(self, event: RelayInput) -> None:
        new = RELAY_TRANSITIONS.get((self.role, self.state, event))
        if new is None:
            error = RemoteProtocolError if event in _REMOTE else LocalProtocolError
            raise error(f"relay {self.role.value}: cannot {event.value} in state {self.state.name}")
        self.state = new

    def _paired(self) -> None:
        self._move(RelayInput.RECEIVE_PAIRED if self.role is not _R.ROUTER else _I.SEND_PAIRED)
        if not self.tls:  # nothing to unwrap: raw from here on
            self._move(RelayInput.TLS_ENDED)

    def tls_ended(self) -> None:
        """(TLS relays.) Both close_notify crossed: the bytes are raw from here on."""
        self._move(RelayInput.TLS_ENDED)

    def close(self) -> None:
        """The connection is gone (idempotent)."""
        if self.state is not RelayState.CLOSED:
            self._move(RelayInput.CLOSE)


class RelayDialer(_Machine):
    """A dialer's end: send :meth:`hello_bytes`, feed the router's plaintext to
    :meth:`receive_data` until it returns :class:`RelayPaired`.

    Args:
        hello: the preamble (its ``role`` is this machine's role).
        tls: the preamble goes over TLS to the router (then the TLS ends after ``paired``).
        where: names the relay in errors (``"relay tls://ctl:8444"``).
    """

    def __init__(self, hello: RelayHello, *, tls: bool, where: str) -> None:
        super().__init__(RelayRole(hello.role), tls)
        self.hello = hello
        self.where = where
        self.paired: RelayReply | None = None

    def hello_bytes(self) -> bytes:
        """The preamble line to send first."""
        self._move(RelayInput.SEND_HELLO)
        return encode_relay_hello(self.hello)

    def receive_data(self, data: bytes) -> list[RelayWaiting | RelayPaired]:
        """Feed plaintext from the router; returns what happened.

        Raises:
            AuthenticationFailed, RelayRefused: the router refused (state ``REFUSED``).
            RemoteProtocolError: a malformed reply, a reply not allowed now, or bytes where
                none may come (after ``paired`` over TLS; after the client's ``paired``).
        """
        if self.state is not RelayState.HELLO_SENT and self.state is not RelayState.WAITING:
            if data:
                raise RemoteProtocolError(
                    f"relay {self.role.value}: unexpected bytes in state {self.state.name} "
                    "(after the relay's 'paired' reply)"
                )
            return []
        self._buffer += data
        events: list[RelayWaiting | RelayPaired] = []
        while self.state is RelayState.HELLO_SENT or self.state is RelayState.WAITING:
            split = split_line(self._buffer, "relay reply")
            if split is None:
                break
            line, rest = split
            self._buffer = bytearray(rest)
            events.append(self._on_reply(decode_relay_reply(line)))
        return events

    def _on_reply(self, reply: RelayReply) -> RelayWaiting | RelayPaired:
        if not reply.ok:
            self._move(RelayInput.RECEIVE_REFUSAL)
            raise refusal_error(reply, self.where)
        if reply.state == "waiting":
            self._move(RelayInput.RECEIVE_WAITING)
            return RelayWaiting()
        if reply.state != "paired":
            raise RemoteProtocolError(
                f"relay {self.role.value}: unknown reply state {reply.state!r} in state "
                f"{self.state.name}"
            )
        self._paired()
        rest, self._buffer = bytes(self._buffer), bytearray()
        if rest and (self.tls or self.role is RelayRole.CLIENT):
            # Over TLS nothing may follow inside the router's TLS; a client's exporter
            # speaks only after the client's Hello.
            raise RemoteProtocolError(
                f"relay {self.role.value}: unexpected bytes after the relay's 'paired' reply"
            )
        pinned = reply.info.get("cert_sha256")
        if self.tls and self.role is RelayRole.CLIENT and not is_sha256_hex(pinned):
            raise RemoteProtocolError("the 'paired' reply names no exporter certificate")
        self.paired = reply
        return RelayPaired(reply, rest)

    @property
    def expected_cert(self) -> str:
        """(A client over TLS, once paired.) The exporter certificate's SHA-256 to check."""
        return str(self.paired.info.get("cert_sha256", "")) if self.paired else ""


class RelayAcceptor(_Machine):
    """The router's end of one dial: feed plaintext to :meth:`receive_data` until it returns
    the preamble, then :meth:`accept` (or :meth:`refuse`), then :meth:`pair`.

    Each method that answers returns the bytes to send (plaintext: over TLS the loop encrypts
    them). Over plain TCP, bytes a client sends before it is spliced (its Hello racing the
    pairing) are kept in :attr:`early` for the peer.

    Args:
        tls: the dial's preamble comes over TLS to the router.
    """

    def __init__(self, *, tls: bool) -> None:
        super().__init__(RelayRole.ROUTER, tls)
        self.hello: RelayHello | None = None
        self.early = bytearray()

    def receive_data(self, data: bytes) -> RelayHello | None:
        """Feed plaintext from the dialer; returns the preamble once it is complete.

        Raises:
            RemoteProtocolError: a malformed preamble, an exporter without ``cert`` over TLS,
                or (over TLS) bytes after the preamble before ``paired``. Answer with
                :meth:`refuse` (``bad_preamble``).
        """
        if self.state is RelayState.START:
            self._buffer += data
            split = split_line(self._buffer, "relay preamble")
            if split is None:
                return None
            line, rest = split
            hello = decode_relay_hello(line)
            if self.tls and hello.role == "exporter" and not hello.cert:
                raise RemoteProtocolError(
                    "relay preamble: an exporter's dial over TLS must name its 'cert'"
                )
            self._move(RelayInput.RECEIVE_HELLO)
            self.hello = hello
            self._buffer = bytearray()
            data = rest
            if not data:
                return hello
            self._early(data)
            return hello
        self._early(data)
        return None

    def _early(self, data: bytes) -> None:
        if self.tls or self.state in (RelayState.REFUSED, RelayState.CLOSED):
            raise RemoteProtocolError(
                f"relay router: bytes after the preamble, before 'paired' (state {self.state.name})"
            )
        self.early += data

    def accept(self) -> bytes:
        """The controller accepted the dial: an exporter's waits (``waiting`` is returned to
        send), a client's goes on pairing (nothing to send yet)."""
        assert self.hello is not None
        if self.hello.role == "exporter":
            self._move(RelayInput.ACCEPT_EXPORTER)
            return encode_relay_reply(RelayReply(ok=True, state="waiting"))
        self._move(RelayInput.ACCEPT_CLIENT)
        return b""

    def pair(self, info: dict[str, Any]) -> bytes:
        """Paired with the peer: the ``paired`` reply to send (over TLS, then close_notify)."""
        self._paired()
        return encode_relay_reply(RelayReply(ok=True, state="paired", info=info))

    def refuse(self, code: str, message: str) -> bytes:
        """Refuse the dial: the reply to send before closing."""
        self._move(RelayInput.SEND_REFUSAL)
        return encode_relay_reply(RelayReply(ok=False, code=code, message=message))

    def take_early(self) -> bytes:
        """The early bytes kept so far (plain TCP), emptied."""
        data, self.early = bytes(self.early), bytearray()
        return data
