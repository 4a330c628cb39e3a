"""Leases from the client side: ask the controller, wait in the queue, reach the exporter through
the relay, release.

Theory of operation. :func:`lease` posts a lease request, long-polls it while it is pending
(reporting the queue position), then dials the controller's router relay with the lease id and
the client token (:func:`dial_relay`); the router splices that connection to the exporter's
outbound dial, and the wire protocol runs over it exactly as over a direct connection. At exit
(normal, exception, ``KeyboardInterrupt``) the connection is closed and the lease released.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from tether.driver import build_client_tree
from tether.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectFailed,
    ControllerError,
    LeaseEnded,
    ProtocolError,
    RelayRefused,
    TetherError,
)
from tether.security import pinned_client_context
from tether.wire import (
    ClientConnection,
    RelayDialer,
    RelayHello,
    RelayPaired,
    RelayReply,
    TLSChannel,
    connect_socket,
    map_connect_errors,
    parse_address,
    relay_url_for,
)

from ._allow import client_policy
from ._connect import RemoteClient, RemoteSession, _remote_class
from ._lease_api import ClientSettings, Lease, LeaseClient, lease_ended, load_client_settings

if TYPE_CHECKING:
    from ._roles import Lab

__all__ = [
    "ClientSettings",
    "Lease",
    "LeaseClient",
    "LeasedSession",
    "dial_relay",
    "lease",
    "load_client_settings",
    "open_leased_tree",
]

log = logging.getLogger("tether.client.lease")


def dial_relay(
    relay: str,
    lease_id: str,
    token: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 30.0,
    exporter: str = "",
) -> tuple[socket.socket | TLSChannel, RelayReply]:
    """Dial the controller's relay for ``lease_id`` and wait until it is spliced to the exporter
    (to ``exporter``, one of the lease's, when named: a lease with roles has several).

    On a ``tls://`` relay the TLS to the router ends after its ``paired`` reply and a new TLS
    session starts through the splice, end to end with the exporter, whose certificate must
    have the digest the router announced (``cert_sha256``).

    Returns:
        The connected socket (the wire protocol's client side starts here) and the router's
        ``paired`` reply (``info["exporter"]`` names the exporter).

    Raises:
        ConnectFailed: cannot connect, TLS failed, or the exporter's certificate is not the
            one the router announced.
        AuthenticationFailed: the relay does not know the token.
        RelayRefused: not this lease's holder, lease ended, exporter unavailable...
    """
    address = parse_address(relay)
    where = f"relay {address}"
    sock = connect_socket(address, ssl_context=ssl_context, timeout=timeout)
    machine = RelayDialer(
        RelayHello(lease_id, "client", token, exporter=exporter),
        tls=isinstance(sock, TLSChannel),
        where=where,
    )
    try:
        with map_connect_errors(where):
            data = machine.hello_bytes()
            if isinstance(sock, TLSChannel):
                sock.send(data)
            else:
                sock.sendall(data)
        paired: RelayPaired | None = None
        while paired is None:
            with map_connect_errors(where):
                chunk = sock.recv(4096)
            if not chunk:
                raise ConnectFailed(f"{where}: the relay closed the connection")
            for event in machine.receive_data(chunk):  # raises the router's refusal
                if isinstance(event, RelayPaired):
                    paired = event
        if isinstance(sock, TLSChannel):
            sock = _end_to_end(sock, machine)
        sock.settimeout(None)
        return sock, paired.reply
    except ProtocolError as exc:
        sock.close()
        raise ConnectFailed(f"{where}: {exc}") from exc
    except BaseException:
        sock.close()
        raise


def _end_to_end(channel: TLSChannel, machine: RelayDialer) -> TLSChannel:
    """End the TLS to the router and open the session's own TLS with the exporter."""
    where = machine.where
    with map_connect_errors(f"{where}: TLS hand-over to the exporter"):
        # Wait for the router's close_notify: nothing else may come (the machine says so).
        last = channel.recv(1)
    machine.receive_data(last)
    with map_connect_errors(f"{where}: TLS hand-over to the exporter"):
        raw, received = channel.unwrap()
        machine.tls_ended()
        session = TLSChannel(raw, pinned_client_context(), None, received)
    expected = machine.expected_cert
    if not hmac.compare_digest(session.peer_certificate_sha256(), expected):
        raise ConnectFailed(
            f"{where}: the exporter's certificate is not the one the relay announced "
            f"(sha256 {expected[:16]}...)"
        )
    return session


# -- the client tree through the relay --------------------------------------------------------


class LeasedSession(RemoteSession):
    """A :class:`RemoteSession` whose connections go through the controller's relay.

    The exporter dials the relay for a lease only once its ``before_lease`` hook finished, so
    a dial the router answers with ``exporter_unavailable`` (it waited 10 s for the exporter)
    is repeated until ``exporter_timeout`` seconds have passed.

    Attributes:
        lease: the lease it serves (``lease.id``, ``lease.exporters``).
        relay: the relay URL dialled.
        address: the relay's address, or the local :class:`RelayProxy` socket once
            :func:`open_leased_tree` started one (``tree.session_url`` is built from it).
    """

    def __init__(
        self,
        lease: Lease,
        settings: ClientSettings,
        *,
        keepalive: float | None,
        timeout: float,
        exporter_timeout: float = 150.0,
        exporter: str = "",
    ) -> None:
        if not lease.relay:
            raise ConfigError(
                f"lease {lease.id}: the controller runs no relay (start it with "
                "`tether controller serve --relay-listen tls://0.0.0.0:8444`)"
            )
        self.lease = lease
        #: The exporter of the lease this session reaches ("": the lease's only one).
        self.exporter = exporter
        self._settings = settings
        self._exporter_timeout = exporter_timeout
        self.relay = relay_url_for(lease.relay, settings.endpoint)
        address = parse_address(self.relay)
        self._relay_context = settings.ssl_context() if address.scheme == "tls" else None
        super().__init__(
            address,
            ssl_context=self._relay_context,
            meta={"client": "tether.lease"},
            session_id=None,
            keepalive=keepalive,
            timeout=timeout,
        )

    def why_lost(self) -> LeaseEnded | None:
        """Ask the controller whether the lease is over (``None``: it is not, or the
        controller cannot say right now)."""
        try:
            with LeaseClient(self._settings) as api:
                return lease_ended(api.get(self.lease.id))
        except TetherError as exc:
            log.info("lease %s: cannot ask the controller about it: %s", self.lease.id, exc)
            return None

    def dial(self, timeout: float | None = None) -> socket.socket | TLSChannel:
        """One dial of the relay for this session's lease (see :func:`dial_relay`)."""
        sock, _ = dial_relay(
            self.relay,
            self.lease.id,
            self._settings.token,
            ssl_context=self._relay_context,
            timeout=self._timeout if timeout is None else timeout,
            exporter=self.exporter,
        )
        return sock

    def _open(self, session_id: str | None) -> ClientConnection:
        deadline = time.monotonic() + self._exporter_timeout
        while True:
            try:
                sock = self.dial()
                break
            except RelayRefused as exc:
                # The router itself waited for the exporter: dial again, no pause needed.
                if exc.code != "exporter_unavailable" or time.monotonic() >= deadline:
                    raise
        meta = dict(self._meta)
        if session_id is not None:
            meta["session"] = session_id  # an exporter that restarted refuses: SessionLost
        keepalive = None if self._keepalive is None else self._keepalive / 3
        return ClientConnection(
            sock, meta=meta, keepalive=keepalive, handshake_timeout=self._timeout
        )


def _tree(
    lease: Lease,
    settings: ClientSettings,
    *,
    allow: Sequence[str],
    unsafe: bool,
    keepalive: float | None,
    timeout: float,
    exporter: str = "",
) -> RemoteClient:
    remote = LeasedSession(lease, settings, keepalive=keepalive, timeout=timeout, exporter=exporter)
    try:
        policy = client_policy(allow, unsafe)
        root = build_client_tree(remote.server_meta["report"], remote, policy)
    except BaseException:
        remote.close()
        raise
    root.__class__ = _remote_class(type(root))
    assert isinstance(root, RemoteClient)
    root._remote = remote
    return root


def _spinner_callback(enabled: bool | None) -> tuple[contextlib.ExitStack, Callable[[Lease], None]]:
    """A rich spinner showing the queue position while the lease is pending."""
    stack = contextlib.ExitStack()
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return stack, lambda _lease: None
    from rich.console import Console

    status = stack.enter_context(Console(stderr=True).status("requesting a lease..."))

    def update(lease: Lease) -> None:
        place = f"position {lease.position} in the queue" if lease.position else "queued"
        if lease.waiting:
            place += f"; {lease.waiting}"
        status.update(f"waiting for lease {lease.id}: {place}")

    return stack, update


@overload
def lease(
    selector: str | None = None,
    duration: str | float = "30m",
    *,
    roles: None = None,
    **options: Any,
) -> contextlib.AbstractContextManager[RemoteClient]: ...


@overload
def lease(
    selector: None = None,
    duration: str | float = "30m",
    *,
    roles: Mapping[str, str],
    **options: Any,
) -> contextlib.AbstractContextManager[Lab]: ...


def lease(
    selector: str | None = None,
    duration: str | float = "30m",
    *,
    roles: Mapping[str, str] | None = None,
    **options: Any,
) -> contextlib.AbstractContextManager[Any]:
    """Lease an exporter, connect to it through the controller's relay, yield its client tree.

    With ``roles`` (role name → selector), lease one exporter per role in one request (granted
    together or not at all) and yield a :class:`~tether.client.Lab` with one tree per role:
    ``lab.dut.power.on()``, ``lab.host...``.

    The lease is released when the block ends, whatever ends it (an exception, Ctrl-C). The
    tree's ``session.lease`` is the :class:`Lease` (id, exporters, ends_at).

    Args:
        selector: labels the exporter must match, e.g. ``"board=rpi4,site=lab-a"``.
        duration: how long (``"30m"``, ``"1h30m"``, seconds); the controller ends it then.
        exporter: lease this exporter by name instead of by selector.
        controller, token, ca, config: see :func:`load_client_settings`.
        allow, unsafe: which client classes may be imported (as in :func:`tether.connect`).
        keepalive: seconds before a silent connection is declared dead (``None``: off).
        timeout: seconds for connecting through the relay.
        progress: show a spinner with the queue position while waiting (default: when
            stderr is a terminal).
        on_wait: called with the pending lease each time its queue position is reported.
        roles: ``{"dut": "board=rpi4", "host": "kind=x86"}``; replaces ``selector``.
        lease_id: use this lease of yours (already acquired) instead of asking for one; it
            is not released at the end (whoever acquired it releases it).
        on_hook: called with each hook report and its new output while the exporter's
            ``before_lease`` hook runs (default: printed to stderr, ``[before_lease] ...``).

    Raises:
        ConfigError: no controller or token configured; the controller runs no relay.
        ControllerError: the request was refused (``bad_selector``...) or the lease became
            ``unsatisfiable``/``expired`` while waiting.
        ConnectFailed, AuthenticationFailed, RelayRefused: reaching the controller or relay.
    """
    return _lease(selector, duration, roles=roles, **options)


@contextlib.contextmanager
def _lease(
    selector: str | None = None,
    duration: str | float = "30m",
    *,
    exporter: str | None = None,
    controller: str | None = None,
    token: str | None = None,
    ca: str | Path | None = None,
    config: str | Path | None = None,
    allow: Sequence[str] = (),
    unsafe: bool = False,
    keepalive: float | None = 10.0,
    timeout: float = 30.0,
    progress: bool | None = None,
    on_wait: Callable[[Lease], None] | None = None,
    roles: Mapping[str, str] | None = None,
    lease_id: str | None = None,
    on_hook: Callable[[dict[str, Any], str], None] | None = None,
) -> Iterator[Any]:
    """:func:`lease`'s body (typed by its overloads)."""
    if roles is not None:
        if selector is not None or exporter is not None:
            raise ConfigError("give roles= or selector=/exporter=, not both")
        from ._roles import lease_roles

        with lease_roles(
            roles,
            duration,
            controller=controller,
            token=token,
            ca=ca,
            config=config,
            allow=allow,
            unsafe=unsafe,
            keepalive=keepalive,
            timeout=timeout,
            progress=progress,
            on_wait=on_wait,
        ) as lab:
            yield lab
        return

    from ._watch import HookWatcher, hook_printer

    settings = load_client_settings(controller, token, ca, config)
    with LeaseClient(settings) as api:
        if lease_id is not None:
            granted = api.get(lease_id)
        else:
            granted = api.request(selector, duration, exporter=exporter)
        try:
            spinner, update = _spinner_callback(progress)
            with spinner:

                def waiting(pending: Lease) -> None:
                    update(pending)
                    if on_wait is not None:
                        on_wait(pending)

                granted = api.wait_ready(granted, waiting)
            watcher = HookWatcher(settings, granted, on_hook or hook_printer())
            try:
                tree = _tree(
                    granted,
                    settings,
                    allow=allow,
                    unsafe=unsafe,
                    keepalive=keepalive,
                    timeout=timeout,
                )
            except TetherError as exc:
                # The exporter may have ended the lease (a failing hook): say so, not a relay error.
                ended = api.get(granted.id)
                if ended.state != "ready":
                    raise ControllerError(
                        f"lease {ended.id} is {ended.state}: {ended.reason or 'no reason given'}",
                        code=ended.state,
                        status=409,
                    ) from exc
                raise
            finally:
                watcher.stop()
            try:
                yield tree
            finally:
                tree.close()
        finally:
            if lease_id is None:
                with contextlib.suppress(ConnectFailed, ControllerError, AuthenticationFailed):
                    api.release(granted.id)


@contextlib.contextmanager
def open_leased_tree(selector: str | None, **kwargs: Any) -> Iterator[RemoteClient]:
    """``tether shell --selector``'s entry point: :func:`lease` (same arguments), plus a
    local :class:`RelayProxy`, so ``tree.session_url`` is a ``unix://...?session=ID`` URL that
    ``tether.connect`` (and so ``dut``) can use as ``TETHER_HOST``."""
    from ._relay_proxy import RelayProxy

    with lease(selector, **kwargs) as tree:
        session = tree.session
        assert isinstance(session, LeasedSession)
        with RelayProxy(session) as proxy:
            session.address = parse_address(proxy.url)
            yield tree
