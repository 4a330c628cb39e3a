"""The exporter's controller agent: outbound only, it registers, heartbeats and serves leases.

Theory of operation. The exporter never accepts a connection from the controller or a client.
The agent (a few asyncio tasks it owns) does everything by dialling out:

* **registration and heartbeat** (HTTP, ``httpx``): ``POST /v1/exporter/register`` with the
  exporter's labels and driver tree report, then ``POST /v1/exporter/heartbeat`` every
  ``heartbeat_interval`` seconds (at once when the status changes)
  carrying the exporter's status (``hook`` while a hook runs, else ``available``; the
  controller shows ``leased`` and, once heartbeats stop, ``offline``). A stopping agent sends
  ``offline`` itself, after its sessions closed, so nobody is granted it in the meantime. A
  long-poll of the exporter's lease list (one request at a time, so answers arrive in order)
  tells the agent about new and ended leases at once, without any inbound connection.
* **one session per lease**: for a new lease the agent runs the ``before_lease`` hook, opens a
  fresh session (a new driver tree) and starts a :class:`LeaseRelay`; when the lease disappears
  from the list (released, expired) it stops the relay, closes the session and runs
  ``after_lease``. When the controller cannot be reached the agent retries with back-off and
  leaves the running leases alone; an unknown token stops it.
* **relay dials**: a :class:`LeaseRelay` keeps one idle TLS dial open to the controller's relay
  for its lease. When the router pairs it with the lease holder's connection, the TLS to the
  router ends and the dial serves the client's own TLS session (the exporter acts as the TLS
  and wire-protocol server on its outbound socket, with a per-process certificate whose
  digest it gave the router); the relay dials again, so the next client finds one waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import httpx

from tether.driver import DriverHost
from tether.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectFailed,
    ControllerError,
    HookFailed,
    ProtocolError,
    RelayRefused,
)
from tether.wire import Address, map_connect_errors, parse_address
from tether.wire._relay import (
    RelayHello,
    decode_relay_reply,
    encode_relay_hello,
    refusal_error,
    relay_url_for,
    split_line,
    tcp_keepalive_options,
)
from tether.wire._tls import TLSBuffer

from ._certs import SessionIdentity, client_ssl_context
from ._config import ExporterConfig, build_tree
from ._exporter import Exporter

__all__ = [
    "ControllerAgent",
    "LeaseRelay",
    "controller_error",
    "dial_relay",
    "map_http_errors",
    "read_exporter_token",
    "run_agent",
]

log = logging.getLogger("tether.exporter.agent")

#: Seconds a stopping agent waits for the controller to take its "offline".
_OFFLINE_TIMEOUT = 3.0

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
    """One outbound relay dial, until it is paired and handed to the serving protocol.

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
        self._hello = hello
        self._make_protocol = make_protocol
        self._where = where
        self._tls = tls
        self._session_context = session_context
        self._buffer = bytearray()
        self._served: asyncio.BaseProtocol | None = None
        self._paired_seen = False
        self._serving: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self.waiting: asyncio.Future[None] = loop.create_future()
        self.paired: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have its methods.
        self.transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in tcp_keepalive_options():
                with contextlib.suppress(OSError):
                    sock.setsockopt(*option)
        if self._tls is None:
            transport.write(encode_relay_hello(self._hello))
            return
        self._tls.start()
        self._tls.send(encode_relay_hello(self._hello))
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
            if self._paired_seen and tls.peer_closed:
                self._end_relay_tls(tls)
        except ConnectFailed as exc:
            self._fail(exc)
        except ProtocolError as exc:
            self._fail(ConnectFailed(f"{self._where}: {exc}"))

    def _on_text(self, data: bytes) -> None:
        if self._paired_seen:
            raise ProtocolError("unexpected bytes after the relay's 'paired' reply")
        self._buffer += data
        while not self._paired_seen:
            split = split_line(self._buffer, "relay reply")
            if split is None:
                return
            line, rest = split
            self._buffer = bytearray(rest)
            self._on_reply(line)

    def _on_reply(self, line: bytes) -> None:
        reply = decode_relay_reply(line)
        if not reply.ok:
            raise refusal_error(reply, self._where)
        if reply.state == "waiting" and not self.waiting.done():
            self.waiting.set_result(None)
        elif reply.state == "paired":
            self._paired_seen = True
            if not self.waiting.done():
                self.waiting.set_result(None)
            if self._tls is None:
                self._serve_plain()
            elif self._buffer:
                raise ProtocolError("unexpected bytes after the relay's 'paired' reply")
        else:
            raise ProtocolError(f"unexpected relay reply state {reply.state!r}")

    def _serve_plain(self) -> None:
        assert self.transport is not None
        served = self._make_protocol()
        self._served = served
        self.transport.set_protocol(served)
        served.connection_made(self.transport)
        rest, self._buffer = bytes(self._buffer), bytearray()
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


# -- HTTP to the controller -------------------------------------------------------------------


def controller_error(response: httpx.Response, what: str) -> ControllerError | AuthenticationFailed:
    """The error for a controller's 4xx/5xx answer (its JSON ``error`` and ``message``)."""
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    code = str(body.get("error", "http_error"))
    message = f"{what}: {body.get('message') or response.reason_phrase} ({response.status_code})"
    if response.status_code == 401:
        return AuthenticationFailed(message)
    details = {k: v for k, v in body.items() if k not in ("error", "message", "status", "code")}
    return ControllerError(message, code=code, status=response.status_code, **details)


@contextlib.contextmanager
def map_http_errors(what: str) -> Any:
    """Translate httpx's transport errors into ConnectFailed, once, here."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise ConnectFailed(f"{what}: timed out ({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise ConnectFailed(f"{what}: {exc or type(exc).__name__}") from exc


def read_exporter_token(config: ExporterConfig) -> str:
    """The exporter's controller token: ``controller.token``, else ``controller.token_file``.

    Raises:
        ConfigError: neither is set, or the file cannot be read or is empty.
    """
    controller = config.controller
    if controller is None:
        raise ConfigError(f"{config.source}: no `controller:` section")
    if controller.token:
        return controller.token.strip()
    if controller.token_file is None:
        raise ConfigError(
            f"{config.source}: controller: needs `token` or `token_file` (the exporter token "
            "printed by `tether admin create-exporter`)"
        )
    try:
        token = Path(controller.token_file).read_text().strip()
    except OSError as exc:
        raise ConfigError(
            f"{controller.token_file}: cannot read the controller token: {exc.strerror}"
        ) from exc
    if not token:
        raise ConfigError(f"{controller.token_file}: the controller token file is empty")
    return token


# -- the agent --------------------------------------------------------------------------------


class ControllerAgent:
    """Registers an :class:`Exporter` with the controller and serves its leases.

    Args:
        exporter: a started exporter (its sessions serve the leases).
        config: the exporter's config (labels, hooks, the export tree for the report).
        endpoint: the controller's base URL (``https://controller:8443``).
        token: the exporter's bearer token.
        ca: the CA that signed the controller's (and its relay's) certificate; ``None``: the
            system's CAs.
        long_poll: seconds each lease long-poll may wait at the controller.
        retry: seconds before retrying after the controller could not be reached, doubled per
            failure up to ``max_retry``.
    """

    def __init__(
        self,
        exporter: Exporter,
        config: ExporterConfig,
        *,
        endpoint: str,
        token: str,
        ca: str | Path | None = None,
        long_poll: float = 30.0,
        retry: float = 1.0,
        max_retry: float = 30.0,
    ) -> None:
        self.exporter = exporter
        self.config = config
        self.endpoint = endpoint.rstrip("/")
        self._token = token
        self._ssl_context = client_ssl_context(ca) if ca is not None else None
        self._long_poll = long_poll
        self._retry = retry
        self._max_retry = max_retry
        self._http: httpx.AsyncClient | None = None
        self._leases: dict[str, asyncio.Task[None]] = {}
        self._done: set[str] = set()  # leases whose relay the router ended; not restarted
        #: the certificate of relayed sessions, made when run() starts.
        self._identity: SessionIdentity | None = None
        self._hooks = 0
        self._status_changed = asyncio.Event()
        self.name: str | None = None
        self.registered = asyncio.Event()
        self.heartbeat_interval = 10.0
        #: lease id -> the session serving it
        self.sessions: dict[str, str] = {}

    @property
    def status(self) -> str:
        """``offline`` (not registered), ``hook``, ``leased`` or ``available``."""
        if not self.registered.is_set():
            return "offline"
        if self._hooks:
            return "hook"
        return "leased" if self._leases else "available"

    async def run(self) -> None:
        """Serve until cancelled; reconnects (with back-off) when the controller goes away.

        Raises:
            AuthenticationFailed: the controller does not know the token (fatal).
        """
        if self._identity is None:  # before the first lease, which should not wait for it
            self._identity = await asyncio.to_thread(SessionIdentity.generate)
        verify: ssl.SSLContext | bool = self._ssl_context or True
        # Tether-Agent: this process's id, so the controller keeps one agent per exporter.
        headers = {"Authorization": f"Bearer {self._token}", "Tether-Agent": secrets.token_hex(16)}
        timeout = httpx.Timeout(10.0, read=self._long_poll + 10.0)
        delay = self._retry
        async with httpx.AsyncClient(
            base_url=self.endpoint, headers=headers, verify=verify, timeout=timeout
        ) as http:
            self._http = http
            try:
                while True:
                    try:
                        await self._connected()
                    except (ConnectFailed, ControllerError) as exc:
                        if isinstance(exc, AuthenticationFailed):
                            raise
                        if self.registered.is_set():  # it worked for a while: start over
                            delay = self._retry
                        self.registered.clear()
                        log.warning("controller %s: %s; retry in %g s", self.endpoint, exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self._max_retry)
            finally:
                was_registered = self.registered.is_set()
                self.registered.clear()
                await self._stop_all()
                if was_registered:
                    await self._say_offline()

    async def _say_offline(self) -> None:
        """Tell the controller we go away, so it stops granting us at once (best effort: the
        heartbeat time-out says it anyway)."""
        try:
            async with asyncio.timeout(_OFFLINE_TIMEOUT):
                await self._request("POST", "/v1/exporter/heartbeat", json={"status": "offline"})
        except (TimeoutError, ConnectFailed, ControllerError) as exc:
            log.info("could not tell %s we go offline: %s", self.endpoint, exc)

    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        assert self._http is not None
        what = f"{method} {self.endpoint}{path}"
        with map_http_errors(what):
            response = await self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise controller_error(response, what)
        body = response.json()
        return body if isinstance(body, dict) else {}

    async def _connected(self) -> None:
        host = DriverHost(build_tree(self.config)[0], self.config.name)
        answer = await self._request(
            "POST",
            "/v1/exporter/register",
            json={"labels": dict(self.config.labels), "report": host.report()},
        )
        self.name = str(answer.get("name", self.config.name))
        self.heartbeat_interval = float(answer.get("heartbeat_interval", 10.0))
        log.info("registered with %s as %s", self.endpoint, self.name)
        self.registered.set()
        self._sync(answer.get("leases", []))
        # Not a TaskGroup: the first failure must come out as itself (not in an
        # ExceptionGroup) so run() can tell "controller away" from "token rejected".
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._heartbeats()), loop.create_task(self._watch_leases())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()

    async def _heartbeats(self) -> None:
        while True:
            self._status_changed.clear()
            status = "hook" if self._hooks else "available"
            answer = await self._request("POST", "/v1/exporter/heartbeat", json={"status": status})
            self.heartbeat_interval = float(answer.get("heartbeat_interval", 10.0))
            # Its lease list is not applied: it may be older than the long-poll's answer
            # (both are in flight at once), and applying it would end a brand-new lease.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat_interval):
                    await self._status_changed.wait()

    async def _watch_leases(self) -> None:
        version = ""
        while True:
            params: dict[str, Any] = {"wait": self._long_poll}
            if version:
                params["version"] = version
            answer = await self._request("GET", "/v1/exporter/leases", params=params)
            version = str(answer.get("version", ""))
            self._sync(answer.get("leases", []))

    # -- leases -------------------------------------------------------------------------------

    def _sync(self, leases: list[dict[str, Any]]) -> None:
        live = {str(lease["id"]): lease for lease in leases if isinstance(lease, dict)}
        for lease_id, lease in live.items():
            if lease_id not in self._leases and lease_id not in self._done:
                task = asyncio.get_running_loop().create_task(self._serve_lease(lease))
                self._leases[lease_id] = task
                task.add_done_callback(self._forget_lease)
        for lease_id, task in list(self._leases.items()):
            if lease_id not in live:
                task.cancel()
        self._done &= set(live)

    def _forget_lease(self, task: asyncio.Task[None]) -> None:
        for lease_id, each in list(self._leases.items()):
            if each is task:
                del self._leases[lease_id]

    @contextlib.asynccontextmanager
    async def _hook_status(self, hook: str | None) -> AsyncIterator[None]:
        """Report ``hook`` to the controller while a hook runs."""
        if hook is None:
            yield
            return
        self._hooks += 1
        self._status_changed.set()
        try:
            yield
        finally:
            self._hooks -= 1
            self._status_changed.set()

    async def _serve_lease(self, lease: dict[str, Any]) -> None:
        lease_id = str(lease["id"])
        hooks = self.config.hooks
        try:
            async with self._hook_status(hooks.before_lease):
                session = await self.exporter.open_session(lease_id)
        except HookFailed as exc:
            log.error("lease %s: not served: %s", lease_id, exc)
            self._done.add(lease_id)
            with contextlib.suppress(ConnectFailed, ControllerError):  # it ends anyway, later
                reason = {"reason": f"not served: {exc}"}
                await self._request("POST", f"/v1/exporter/leases/{lease_id}/end", json=reason)
            return
        self.sessions[lease_id] = session.id
        client = lease.get("client")
        log.info("lease %s (client %s): session %s opened", lease_id, client, session.id)
        try:
            relay = lease.get("relay")
            if relay:
                await LeaseRelay(
                    relay_url_for(str(relay), self.endpoint),
                    lease_id,
                    self._token,
                    self.exporter.protocol_factory(session_id=session.id, authenticate=False),
                    ssl_context=self._ssl_context,
                    identity=self._identity,
                ).run()
                self._done.add(lease_id)  # the router says the lease ended
            else:
                log.warning("lease %s: the controller runs no relay; nobody can connect", lease_id)
                await asyncio.Future()
        finally:
            self.sessions.pop(lease_id, None)
            async with self._hook_status(hooks.after_lease):
                await self.exporter.close_session(session.id)
            log.info("lease %s: session %s closed", lease_id, session.id)

    async def _stop_all(self) -> None:
        tasks = list(self._leases.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_agent(exporter: Exporter, config: ExporterConfig) -> None:
    """Run the controller agent of ``config.controller`` for ``exporter`` until cancelled.

    ``tether exporter serve`` runs this beside its listeners when the config has a
    ``controller:`` section.

    Raises:
        ConfigError: no ``controller:`` section or no token.
        AuthenticationFailed: the controller rejects the token.
    """
    if config.controller is None:
        raise ConfigError(f"{config.source}: no `controller:` section")
    agent = ControllerAgent(
        exporter,
        config,
        endpoint=config.controller.endpoint,
        token=read_exporter_token(config),
        ca=config.controller.ca,
    )
    await agent.run()
