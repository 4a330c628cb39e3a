"""The exporter's side of the router relay: :class:`LeaseRelay` keeps one idle outbound dial
per lease, each dial (``_Dial``) the asyncio loop around :class:`~tether.wire.RelayDialer`.

Theory of operation. A dial connects to the controller's relay, sends the preamble (over TLS
to the router on a ``tls://`` relay) and waits. The router answers ``waiting`` (the dial sits
in the lease's idle pool) and later ``paired`` (a client took it). Over TLS the TLS to the
router then ends (close_notify both ways) and the dial serves the client's own end-to-end TLS
session with the exporter's per-process certificate (:class:`~tether.security.SessionIdentity`);
over plain TCP the wire protocol follows at once. Either way the connection is handed to a
fresh serving protocol (a ``ServerProtocol`` for the lease's session), and the relay dials
again so that the next client finds one waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import cast

from tether.errors import ConnectFailed, ProtocolError, RelayRefused
from tether.security import SessionIdentity
from tether.wire import (
    Address,
    RelayDialer,
    RelayHello,
    RelayPaired,
    RelayState,
    TLSBuffer,
    map_connect_errors,
    parse_address,
    tcp_keepalive_options,
)

__all__ = ["LeaseRelay", "ProtocolFactory", "dial_relay"]

log = logging.getLogger("tether.exporter.agent")

#: Make the protocol that serves a paired dial (a ``ServerProtocol`` for the lease's session).
ProtocolFactory = Callable[[], asyncio.BaseProtocol]


def _feed(protocol: asyncio.BaseProtocol, data: bytes) -> None:
    """Give ``data`` to ``protocol`` as if its transport had read it."""
    if isinstance(protocol, asyncio.BufferedProtocol):
        view = memoryview(data)
        while view:
            buffer = memoryview(protocol.get_buffer(len(view)))
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            protocol.buffer_updated(size)
            view = view[size:]
    else:
        assert isinstance(protocol, asyncio.Protocol)
        protocol.data_received(data)


class _Dial(asyncio.Protocol):
    """One outbound relay dial, until it is paired and handed to the serving protocol: the
    asyncio loop around :class:`~tether.wire.RelayDialer`.

    Over TLS (``tls`` given) the preamble and the router's replies go through ``tls``; after
    ``paired`` and the router's close_notify the dial answers with its own close_notify and
    serves the client's end-to-end TLS session with ``session_context``. Over plain TCP the
    wire protocol starts right after ``paired``.
    """

    def __init__(
        self,
        hello: RelayHello,
        make_protocol: ProtocolFactory,
        where: str,
        tls: TLSBuffer | None = None,
        session_context: ssl.SSLContext | None = None,
    ) -> None:
        self._machine = RelayDialer(hello, tls=tls is not None, where=where)
        self._make_protocol = make_protocol
        self._where = where
        self._tls = tls
        self._session_context = session_context
        self._served: asyncio.BaseProtocol | None = None
        self._serving: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self.waiting: asyncio.Future[None] = loop.create_future()
        self.paired: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    @property
    def state(self) -> RelayState:
        """Where the handshake is."""
        return self._machine.state

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in tcp_keepalive_options():
                with contextlib.suppress(OSError):
                    sock.setsockopt(*option)
        hello = self._machine.hello_bytes()
        if self._tls is None:
            transport.write(hello)
            return
        self._tls.start()
        self._tls.send(hello)
        self._flush_tls()

    def data_received(self, data: bytes) -> None:
        if self._served is not None:  # bytes read in the same batch as the "paired" line
            _feed(self._served, data)
            return
        try:
            tls = self._tls
            if tls is None:
                self._on_text(data)
                return
            try:
                text = tls.receive_data(data)
            except ssl.SSLError as exc:
                raise ConnectFailed(f"{self._where}: TLS failed: {exc.reason or exc}") from exc
            self._flush_tls()
            if text:
                self._on_text(text)
            if self._machine.state is RelayState.UNWRAPPING and tls.peer_closed:
                self._end_relay_tls(tls)
        except ConnectFailed as exc:
            self._fail(exc)
        except ProtocolError as exc:
            self._fail(ConnectFailed(f"{self._where}: {exc}"))

    def _on_text(self, data: bytes) -> None:
        for event in self._machine.receive_data(data):
            if not self.waiting.done():  # "paired" also means it was accepted
                self.waiting.set_result(None)
            if isinstance(event, RelayPaired) and self._tls is None:
                self._serve_plain(event.leftover)

    def _serve_plain(self, rest: bytes) -> None:
        assert self.transport is not None
        served = self._make_protocol()
        self._served = served
        self.transport.set_protocol(served)
        served.connection_made(self.transport)
        if rest:
            _feed(served, rest)
        self.paired.set_result(None)

    def _end_relay_tls(self, tls: TLSBuffer) -> None:
        """The router's close_notify is in: answer it and serve the client's own TLS."""
        assert self.transport is not None and self._session_context is not None
        # Nothing can follow the router's close_notify before ours reaches it; stop reading
        # so that the client's first TLS bytes wait in the socket for start_tls.
        self.transport.pause_reading()
        tls.unwrap()
        self._flush_tls()
        if not tls.unwrapped or tls.raw_leftover():
            raise ProtocolError("the relay sent bytes after its close_notify too early")
        self._machine.tls_ended()
        self._tls = None
        self.paired.set_result(None)
        self._serving = asyncio.get_running_loop().create_task(
            self._serve_tls(self.transport, self._session_context)
        )

    async def _serve_tls(self, transport: asyncio.Transport, context: ssl.SSLContext) -> None:
        handoff = _Handoff()
        try:
            session = await asyncio.get_running_loop().start_tls(
                transport, handoff, context, server_side=True, ssl_handshake_timeout=30.0
            )
        except Exception as exc:  # TLS, a reset, or a transport closed meanwhile
            log.warning("%s: the client's TLS session failed: %s", self._where, exc or repr(exc))
            transport.close()
            return
        if session is None:  # the connection was closed meanwhile
            return
        handoff.hand_over(self._make_protocol(), session)

    def _flush_tls(self) -> None:
        assert self._tls is not None and self.transport is not None
        data = self._tls.data_to_send()
        if data:
            self.transport.write(data)

    def _fail(self, exc: BaseException) -> None:
        for future in (self.waiting, self.paired):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # the other future may never be awaited
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._served is None:
            self._fail(ConnectFailed(f"{self._where}: the relay closed the connection"))
        self._machine.close()


class _Handoff(asyncio.Protocol):
    """Holds what a new TLS session decrypts before the serving protocol takes over (asyncio's
    ``start_tls`` delivers data before it returns the transport)."""

    def __init__(self) -> None:
        self._early: list[bytes] = []
        self._lost: tuple[Exception | None] | None = None

    def data_received(self, data: bytes) -> None:
        self._early.append(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = (exc,)

    def hand_over(self, served: asyncio.BaseProtocol, transport: asyncio.BaseTransport) -> None:
        transport.set_protocol(served)
        served.connection_made(transport)
        for data in self._early:
            _feed(served, data)
        self._early.clear()
        if self._lost is not None:
            served.connection_lost(self._lost[0])


async def dial_relay(
    relay: str | Address,
    hello: RelayHello,
    make_protocol: ProtocolFactory,
    *,
    ssl_context: ssl.SSLContext | None = None,
    session_context: ssl.SSLContext | None = None,
    connect_timeout: float = 10.0,
) -> _Dial:
    """Dial the relay and wait until the router accepted the dial (``waiting``).

    Args:
        relay: ``tls://HOST:PORT`` (``tcp://`` for tests: no TLS at all).
        hello: the preamble; on a TLS relay its ``cert`` is the digest of the certificate in
            ``session_context``.
        make_protocol: builds the protocol serving the client once paired.
        ssl_context: verifies the router's certificate (default: the system's CAs).
        session_context: the server context of the end-to-end TLS (required for ``tls://``).

    Raises:
        ConnectFailed: cannot connect, TLS failed, or the relay hung up.
        AuthenticationFailed: the router does not know the token.
        RelayRefused: the router refused (``lease_ended``, ``forbidden``...).
    """
    address = parse_address(relay) if isinstance(relay, str) else relay
    if address.scheme == "unix":
        raise ConnectFailed(f"relay {address}: expected tls://HOST:PORT")
    where = f"relay {address}"
    loop = asyncio.get_running_loop()
    tls: TLSBuffer | None = None
    if address.scheme == "tls":
        if session_context is None or not hello.cert:
            raise ValueError("a TLS relay dial needs the session's context and its 'cert'")
        tls = TLSBuffer(
            ssl_context or ssl.create_default_context(),
            server_side=False,
            server_hostname=address.host,
        )
    with map_connect_errors(f"cannot connect to {where}"):
        async with asyncio.timeout(connect_timeout):
            _, dial = await loop.create_connection(
                lambda: _Dial(hello, make_protocol, where, tls, session_context),
                address.host,
                address.port,
            )
            await dial.waiting
    return dial


class LeaseRelay:
    """Keeps one idle relay dial open for a lease; each paired dial is served by
    ``make_protocol()``.

    Run :meth:`run` as a task; cancel it (or let the router refuse with ``lease_ended``) to
    stop; other refusals and failures are retried with back-off. Served connections are not
    closed by stopping the relay: the session's close does that, and the router cuts them
    when the lease ends.

    Args:
        relay: the controller's relay address (``tls://host:port``).
        lease_id: the lease.
        token: the exporter's bearer token.
        make_protocol: builds the protocol serving one client connection.
        ssl_context: verifies the relay's certificate (default: the system's CAs).
        identity: the certificate of the end-to-end TLS sessions (a TLS relay; default: a
            new one).
        retry: seconds between failed dials, doubled per failure up to ``max_retry``.
    """

    def __init__(
        self,
        relay: str | Address,
        lease_id: str,
        token: str,
        make_protocol: ProtocolFactory,
        *,
        ssl_context: ssl.SSLContext | None = None,
        identity: SessionIdentity | None = None,
        retry: float = 0.5,
        max_retry: float = 10.0,
    ) -> None:
        self.relay = parse_address(relay) if isinstance(relay, str) else relay
        self.lease_id = lease_id
        self._token = token
        self._make_protocol = make_protocol
        self._ssl_context = ssl_context
        self._identity = identity
        self._retry = retry
        self._max_retry = max_retry
        self.served = 0
        #: set while an idle dial is accepted and waiting for a client.
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Dial, wait for a pairing, repeat; returns when the router says the lease ended."""
        identity = self._identity
        if identity is None and self.relay.scheme == "tls":
            identity = await asyncio.to_thread(SessionIdentity.generate)
        hello = RelayHello(
            self.lease_id, "exporter", self._token, identity.cert_sha256 if identity else ""
        )
        delay = self._retry
        while True:
            dial: _Dial | None = None
            try:
                dial = await dial_relay(
                    self.relay,
                    hello,
                    self._make_protocol,
                    ssl_context=self._ssl_context,
                    session_context=identity.server_context if identity else None,
                )
                self.ready.set()
                await dial.paired
                self.served += 1
                delay = self._retry
            except RelayRefused as exc:
                if exc.code == "lease_ended":
                    log.info("lease %s: relay stops: %s", self.lease_id, exc)
                    return
                # Anything else may pass (a lease not visible yet on this replica...): the
                # agent cancels this relay when the lease leaves its lease list.
                log.warning("lease %s: %s; retrying in %g s", self.lease_id, exc, delay)
            except ConnectFailed as exc:
                log.warning("lease %s: %s; retrying in %g s", self.lease_id, exc, delay)
            except asyncio.CancelledError:
                if dial is not None and dial.transport is not None and not dial.paired.done():
                    dial.transport.close()
                raise
            finally:
                self.ready.clear()
            if dial is None or not dial.paired.done() or dial.paired.exception() is not None:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._max_retry)
