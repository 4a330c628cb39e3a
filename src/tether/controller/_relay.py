"""The router relay: splices a lease holder's connection to its exporter's outbound dial.

Theory of operation. Exporters never accept connections: for each live lease the exporter's
agent keeps one *idle dial* open to this listener. A client of that lease dials too. Each side
sends the preamble of :mod:`tether.wire._relay` (lease id, role, bearer token); the router
asks the controller's ``authorize`` callback whether this identity may take that role for that
lease, then:

* an exporter's dial waits in the lease's idle pool (it is told ``waiting``);
* a client's dial takes an idle exporter dial (waiting up to ``pair_timeout`` for one), both are
  told ``paired``, and from then on every byte read from one side is written to the other.
  The exporter's agent notices the ``paired`` line and dials again, so the pool refills.

On a TLS listener each side's TLS to the router lasts only for the preamble and the replies:
after ``paired`` the router sends close_notify, waits for the side's own, and copies the raw
bytes that follow, which are an end-to-end TLS session between client and exporter (the
client is told the exporter's certificate digest in its ``paired`` reply). The router never
decrypts a session, and copying costs it no cryptography. Bytes for a side that has not yet
sent its close_notify are held (bounded) until it has.

Splicing uses asyncio protocols, no per-connection task: ``data_received`` writes straight to
the peer's transport, and the peer's write-buffer watermarks pause and resume reading on this
side, so a slow reader throttles a fast writer end to end without unbounded buffering.

Authorisation is per lease and lives only as long as the lease: :meth:`RelayRouter.end_lease`
(called by the controller when a lease is released, expires or is revoked) closes the lease's
idle dials and every spliced pair, and refuses later dials for it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from tether.errors import AuthenticationFailed, ConfigError, ProtocolError, RelayRefused
from tether.wire import (
    RELAY_TRANSITIONS,
    Address,
    RelayAcceptor,
    RelayHello,
    RelayInput,
    RelayRole,
    RelayState,
    TLSBuffer,
    parse_address,
    tcp_keepalive_options,
)

__all__ = ["Authorize", "RelayGrant", "RelayRouter"]

log = logging.getLogger("tether.controller.relay")

#: Bytes a side may send before it is spliced (a client's Hello racing the pairing).
_MAX_EARLY = 1 << 20
_WRITE_HIGH = 4 << 20
#: How many lease ids :meth:`RelayRouter.end_lease` remembers to refuse late dials.
_ENDED_MEMORY = 65536
#: States in which the router may still tell a dialer why it is refused.
_REFUSABLE = frozenset(
    state
    for role, state, event in RELAY_TRANSITIONS
    if role is RelayRole.ROUTER and event is RelayInput.SEND_REFUSAL
)


@dataclass(frozen=True, slots=True)
class RelayGrant:
    """What ``authorize`` returns for an accepted dial.

    Attributes:
        lease_id: the lease the dial belongs to.
        identity: who dialled (the client's or the exporter's identity name), for logs.
        exporter: the exporter serving the lease, told to the client on ``paired``.
        info: extra fields sent to the client in its ``paired`` reply.
    """

    lease_id: str
    identity: str
    exporter: str = ""
    info: dict[str, Any] = field(default_factory=dict)


#: ``authorize(hello)``: accept the dial (return a grant) or refuse it by raising
#: ``AuthenticationFailed`` (unknown token) or ``RelayRefused`` (not this lease's holder or
#: exporter, lease not active...). It must check that the token's identity may take
#: ``hello.role`` for ``hello.lease`` *now*.
Authorize = Callable[[RelayHello], Awaitable[RelayGrant]]


def _set_keepalive(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        for option in tcp_keepalive_options():
            with contextlib.suppress(OSError):
                sock.setsockopt(*option)


class _Side(asyncio.Protocol):
    """One dialled connection: the asyncio loop around :class:`~tether.wire.RelayAcceptor`
    (TLS to the router, preamble, authorisation, waiting or pairing, then on TLS relays
    unwrapping), then spliced raw to its peer."""

    def __init__(self, router: RelayRouter) -> None:
        self.router = router
        self.transport: asyncio.Transport | None = None
        context = router._ssl_context
        self._tls = TLSBuffer(context, server_side=True) if context is not None else None
        self.machine = RelayAcceptor(tls=self._tls is not None)
        self.grant: RelayGrant | None = None
        self.peer: _Side | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._reading_paused = False
        #: raw bytes from the peer, held until this side has unwrapped TLS.
        self._held: list[bytes] = []
        self._held_size = 0

    @property
    def state(self) -> RelayState:
        return self.machine.state

    @property
    def hello(self) -> RelayHello | None:
        return self.machine.hello

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = transport = cast(asyncio.Transport, transport)
        transport.set_write_buffer_limits(high=_WRITE_HIGH)
        _set_keepalive(transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.router.preamble_timeout, self._preamble_timeout)

    def data_received(self, data: bytes) -> None:
        if self.machine.state is RelayState.SPLICED:
            self._forward(data)
            return
        tls = self._tls
        if tls is None:
            self._on_plaintext(data)
            return
        try:
            plaintext = tls.receive_data(data)
        except ssl.SSLError as exc:
            log.info("relay: TLS from %s failed: %s", self._peername(), exc)
            self.close()
            return
        self._flush_tls()
        if plaintext:
            self._on_plaintext(plaintext)
        if tls.unwrapped and self.machine.state is RelayState.UNWRAPPING:
            self._finish_unwrap(tls.raw_leftover())

    def eof_received(self) -> bool:
        # The end of one side ends the pair (TLS has no half-close).
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.machine.close()
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
        self.router._forget(self)
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    # -- steps --------------------------------------------------------------------------------

    def _on_plaintext(self, data: bytes) -> None:
        machine = self.machine
        if machine.state is RelayState.UNWRAPPING or machine.state is RelayState.CLOSED:
            self.close()  # over TLS nothing may follow "paired" inside the router's TLS
            return
        try:
            hello = machine.receive_data(data)
        except ProtocolError as exc:
            self.refuse("bad_preamble", str(exc))
            return
        if hello is not None:
            self._task = asyncio.get_running_loop().create_task(self._authorize(hello))
        if len(machine.early) > _MAX_EARLY and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True

    def _preamble_timeout(self) -> None:
        self._timer = None
        if self.machine.state in (RelayState.START, RelayState.AUTHORIZING):
            self.refuse("timeout", "no valid relay preamble in time")

    def _unwrap_timeout(self) -> None:
        self._timer = None
        if self.machine.state is RelayState.UNWRAPPING:
            log.info("relay: %s did not end its TLS to the router in time", self._peername())
            self.close()

    async def _authorize(self, hello: RelayHello) -> None:
        try:
            grant = await self.router.authorize(hello)
            if grant.lease_id != hello.lease:
                raise RelayRefused("the grant names another lease", code="forbidden")
            if hello.lease in self.router._ended:
                raise RelayRefused(f"lease {hello.lease} has ended", code="lease_ended")
        except AuthenticationFailed as exc:
            log.warning("relay: %s dial for lease %s refused: %s", hello.role, hello.lease, exc)
            self.refuse("unauthenticated", str(exc))
            return
        except RelayRefused as exc:
            log.warning("relay: %s dial for lease %s refused: %s", hello.role, hello.lease, exc)
            self.refuse(exc.code, str(exc))
            return
        except Exception as exc:
            log.exception("relay: authorising %s dial for lease %s failed", hello.role, hello.lease)
            self.refuse("internal", f"{type(exc).__name__}: {exc}")
            return
        finally:
            self._task = None
        if self.machine.state is not RelayState.AUTHORIZING:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.grant = grant
        self._write(self.machine.accept())
        if hello.role == "exporter":  # accepted: it waits in the pool
            self.router._offer_exporter(self)
        else:
            self._task = asyncio.get_running_loop().create_task(self._pair())

    async def _pair(self) -> None:
        assert self.grant is not None
        try:
            wanted = self.hello.exporter if self.hello is not None else ""
            exporter = await self.router._take_exporter(self.grant.lease_id, wanted)
        except RelayRefused as exc:
            self.refuse(exc.code, str(exc))
            return
        except TimeoutError:
            self.refuse(
                "exporter_unavailable",
                f"no connection from the exporter of lease {self.grant.lease_id} within "
                f"{self.router.pair_timeout:g} s",
            )
            return
        finally:
            self._task = None
        if self.machine.state is not RelayState.PAIRING:  # closed while waiting: give it back
            self.router._offer_exporter(exporter)
            return
        self.router._splice(self, exporter)

    def start_splice(self, peer: _Side, info: dict[str, Any]) -> None:
        """Say ``paired``; over TLS, end TLS with this side (close_notify) before the raw
        bytes start; over TCP, start copying at once."""
        self.peer = peer
        self._write(self.machine.pair(info))
        if self._tls is not None:
            self._tls.unwrap()
            self._flush_tls()
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.router.preamble_timeout, self._unwrap_timeout)
            return
        early = self.machine.take_early()
        if early:
            self._forward(early)
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def _finish_unwrap(self, leftover: bytes) -> None:
        """Both close_notify crossed: from now on this side's bytes are raw."""
        self._tls = None
        self.machine.tls_ended()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        assert self.transport is not None
        # The peer's bytes held back until now, then ours that followed the close_notify.
        if self._held:
            self.transport.writelines(self._held)
            self._held.clear()
            self._held_size = 0
        peer = self.peer
        if peer is not None and peer._reading_paused and peer.transport is not None:
            peer._reading_paused = False
            peer.transport.resume_reading()
        if leftover:
            self._forward(leftover)

    def _forward(self, data: bytes) -> None:
        """Send raw ``data`` to the peer, or hold it while the peer still unwraps TLS."""
        peer = self.peer
        if peer is None or peer.transport is None:
            return
        if peer.machine.state is RelayState.SPLICED:
            peer.transport.write(data)
            return
        peer._held.append(data)
        peer._held_size += len(data)
        if peer._held_size > _MAX_EARLY and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True

    # -- helpers ------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not data or self.transport is None or self.transport.is_closing():
            return
        if self._tls is None:
            self.transport.write(data)
        elif not self._tls.unwrapping:
            self._tls.send(data)
            self._flush_tls()

    def _flush_tls(self) -> None:
        assert self._tls is not None
        data = self._tls.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _peername(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "a dialer"

    def refuse(self, code: str, message: str) -> None:
        """Tell the dialer why, then close."""
        if self.machine.state in _REFUSABLE:
            self._write(self.machine.refuse(code, message))
        self.close()

    def close(self) -> None:
        self.machine.close()
        if self.transport is not None:
            self.transport.close()


class RelayRouter:
    """The relay listener. Start it with :meth:`start`; the controller calls :meth:`end_lease`.

    Args:
        authorize: the controller's check of a dial (see :data:`Authorize`).
        pair_timeout: seconds a client waits for an idle exporter dial.
        preamble_timeout: seconds a dialer has to send its preamble and be authorised.
    """

    def __init__(
        self,
        authorize: Authorize,
        *,
        pair_timeout: float = 10.0,
        preamble_timeout: float = 10.0,
    ) -> None:
        self.authorize = authorize
        self.pair_timeout = pair_timeout
        self.preamble_timeout = preamble_timeout
        self._idle: dict[str, collections.deque[_Side]] = {}
        # Clients waiting for an exporter dial: (future, exporter name or "" for any).
        self._wanted: dict[str, collections.deque[tuple[asyncio.Future[_Side], str]]] = {}
        self._pairs: dict[str, set[_Side]] = {}
        self._ended: dict[str, None] = {}  # insertion-ordered set, oldest forgotten first
        self._server: asyncio.Server | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self.address: Address | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, listen: str | Address, ssl_context: ssl.SSLContext | None) -> Address:
        """Listen on ``listen`` (``tls://host:port``; ``tcp://`` only for tests).

        Returns:
            The bound address (the real port when ``listen`` asked for port 0).

        Raises:
            ConfigError: ``tls://`` without an SSL context, or an unsupported scheme.
            OSError: the address cannot be bound.
        """
        address = parse_address(listen) if isinstance(listen, str) else listen
        if address.scheme == "tls" and ssl_context is None:
            raise ConfigError(f"relay listener {address}: tls:// needs a certificate and key")
        if address.scheme == "unix":
            raise ConfigError(f"relay listener {address}: expected tls://HOST:PORT")
        if address.scheme != "tls":
            log.warning(
                "relay on %s without TLS: tokens and sessions cross the network in clear "
                "(use tls:// outside tests)",
                address,
            )
        # TLS is done by each _Side itself (TLSBuffer), so that it can end after "paired".
        self._ssl_context = ssl_context if address.scheme == "tls" else None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Side(self), address.host, address.port)
        port = self._server.sockets[0].getsockname()[1]
        self.address = Address(address.scheme, host=address.host, port=port)
        log.info("relay listening on %s", self.address)
        return self.address

    async def close(self) -> None:
        """Stop listening and close every dial and spliced pair."""
        if self._server is not None:
            self._server.close()
        for lease_id in {*self._idle, *self._pairs, *self._wanted}:
            self._cut(lease_id, "the relay is shutting down")
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    # -- leases -------------------------------------------------------------------------------

    def end_lease(self, lease_id: str, reason: str = "the lease ended") -> int:
        """Cut everything of ``lease_id`` and refuse its later dials.

        Returns:
            How many spliced connections were cut (a pair counts once).
        """
        self._ended[lease_id] = None
        while len(self._ended) > _ENDED_MEMORY:
            del self._ended[next(iter(self._ended))]
        return self._cut(lease_id, reason)

    def pairs(self, lease_id: str) -> int:
        """How many spliced pairs ``lease_id`` has now."""
        return len(self._pairs.get(lease_id, ())) // 2

    def idle_dials(self, lease_id: str) -> int:
        """How many idle exporter dials wait for ``lease_id``."""
        return len(self._idle.get(lease_id, ()))

    def _cut(self, lease_id: str, reason: str) -> int:
        for future, _ in self._wanted.pop(lease_id, ()):
            future.cancel()
        for side in self._idle.pop(lease_id, ()):
            side.refuse("lease_ended", reason)
        sides = self._pairs.pop(lease_id, set())
        for side in sides:
            side.close()
        if sides:
            log.info("relay: lease %s: cut %d connection(s): %s", lease_id, len(sides) // 2, reason)
        return len(sides) // 2

    # -- pairing ------------------------------------------------------------------------------

    def _offer_exporter(self, side: _Side) -> None:
        assert side.grant is not None
        lease_id = side.grant.lease_id
        if side.state is not RelayState.WAITING:
            return
        wanted = self._wanted.get(lease_id) or collections.deque()
        for entry in list(wanted):
            future, name = entry
            if future.done():
                wanted.remove(entry)
            elif not name or name == side.grant.exporter:
                wanted.remove(entry)
                future.set_result(side)
                return
        self._idle.setdefault(lease_id, collections.deque()).append(side)

    async def _take_exporter(self, lease_id: str, exporter: str = "") -> _Side:
        """An idle dial of the lease's exporter (of ``exporter`` when named), waiting for
        one up to ``pair_timeout``."""
        idle = self._idle.get(lease_id) or collections.deque()
        for side in list(idle):
            if side.state is not RelayState.WAITING:
                idle.remove(side)
            elif not exporter or (side.grant is not None and side.grant.exporter == exporter):
                idle.remove(side)
                return side
        future: asyncio.Future[_Side] = asyncio.get_running_loop().create_future()
        entry = (future, exporter)
        self._wanted.setdefault(lease_id, collections.deque()).append(entry)
        try:
            async with asyncio.timeout(self.pair_timeout):
                return await future
        except asyncio.CancelledError:
            if lease_id in self._ended:
                raise RelayRefused(f"lease {lease_id} has ended", code="lease_ended") from None
            raise
        finally:
            wanted = self._wanted.get(lease_id)
            if wanted is not None and entry in wanted:
                wanted.remove(entry)

    def _splice(self, client: _Side, exporter: _Side) -> None:
        assert client.grant is not None and exporter.grant is not None
        lease_id = client.grant.lease_id
        if lease_id in self._ended:
            client.refuse("lease_ended", f"lease {lease_id} has ended")
            exporter.refuse("lease_ended", f"lease {lease_id} has ended")
            return
        self._pairs.setdefault(lease_id, set()).update((client, exporter))
        # The exporter learns it was used first, so it can dial the next idle connection.
        exporter.start_splice(client, {"client": client.grant.identity})
        # The exporter actually spliced (its own grant names it), not the one the client asked.
        named = exporter.grant.exporter or client.grant.exporter or exporter.grant.identity
        info = {"exporter": named, **client.grant.info}
        if exporter.hello is not None and exporter.hello.cert:
            info["cert_sha256"] = exporter.hello.cert
        client.start_splice(exporter, info)
        log.info(
            "relay: lease %s: spliced %s to exporter %s",
            lease_id,
            client.grant.identity,
            exporter.grant.identity,
        )

    def _forget(self, side: _Side) -> None:
        if side.grant is None:
            return
        lease_id = side.grant.lease_id
        idle = self._idle.get(lease_id)
        if idle is not None and side in idle:
            idle.remove(side)
            if not idle:
                del self._idle[lease_id]
        pairs = self._pairs.get(lease_id)
        if pairs is not None:
            pairs.discard(side)
            if side.peer is not None:
                pairs.discard(side.peer)
            if not pairs:
                del self._pairs[lease_id]
