"""``Exporter``: serves fresh driver trees (sessions) built from a config, on asyncio.

Theory of operation. Every connection is a :class:`~tether.wire.ServerProtocol` whose
handshake calls :meth:`Exporter._resolve` with the client's Hello meta: the bearer token is
checked there (before any driver code runs), then the connection either re-attaches to an
existing session (``session`` in the meta: the client reconnecting, or ``dut`` inside a
shell or hook) or gets a new one: a fresh tree from :func:`build_tree`, started, then the
``before_lease`` hook. The reply's meta carries the driver report and the session id.

Hooks reach their session through a private unix socket (in a 0700 temp directory, no token)
whose URL, with ``?session=ID``, is the hook's ``TETHER_HOST``.

All methods run on the exporter's event loop; nothing here blocks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import socket
import ssl
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from tether.driver import DriverHost
from tether.errors import AuthenticationFailed, ConfigError, HookFailed, SessionLost
from tether.security import server_ssl_context, verify_token
from tether.wire import (
    Address,
    ConnectionLimits,
    Listener,
    ServerProtocol,
    bind_tcp,
    bind_unix,
    parse_address,
    serve_listener,
)

from ._config import ExporterConfig, OnFailure, build_tree
from ._hooks import HookResult, run_hook
from ._observe import Observers
from ._session import Session

__all__ = ["Exporter"]

_LEASED_NOW = "the exporter was leased through the controller; direct sessions ended"
_LEASED_REFUSAL = (
    "exporter {name} is leased through the controller; direct sessions are refused until the "
    "lease ends"
)

log = logging.getLogger("tether.exporter")

_MIN_PING_WAIT = 2.0


class Exporter:
    """Serves sessions of one exporter config.

    Use it on an event loop::

        exporter = Exporter(load_config("lab.yaml"))
        await exporter.start()
        url = await exporter.listen("tls://0.0.0.0:7443")
        ...
        await exporter.aclose()

    Args:
        config: a validated config (:func:`~tether.exporter.load_config`).
        extra_token_hashes: more accepted token hashes (e.g. an in-process exporter's own);
            giving any makes tokens required even when the config has none.
        keepalive: a silent peer is declared dead after this many seconds (pinged after half
            of it; at least 2 s are left for the answer), its connection closed and its
            calls cancelled (default: the config's ``keepalive``).
        session_grace: seconds a direct client's session outlives its last connection
            (default: the config's ``session_grace``).
        limits: caps on connections overall and per peer address (default: from the
            config's ``limits:``).

    The config's ``limits:`` also give the handshake deadline (from the accept to the
    client's Hello, TLS included) and the unread backlog a client may leave.

    Attributes:
        sessions: open sessions by id.
        urls: the addresses being listened on (ports resolved).
        exit_requested: set when a hook with ``on_failure: exit`` failed (``exit_status``
            says with what); whoever runs the exporter should then :meth:`aclose` and exit.
    """

    def __init__(
        self,
        config: ExporterConfig,
        *,
        extra_token_hashes: Iterable[str] = (),
        keepalive: float | None = None,
        session_grace: float | None = None,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.config = config
        bounds = config.limits
        self.handshake_timeout = bounds.handshake_timeout
        self.limits = limits or ConnectionLimits(
            bounds.max_connections, bounds.max_connections_per_peer
        )
        self.keepalive = config.keepalive if keepalive is None else keepalive
        self.session_grace = config.session_grace if session_grace is None else session_grace
        self._extra_hashes = list(extra_token_hashes)
        self._hashes: list[str] | None = None
        self.sessions: dict[str, Session] = {}
        self._ending: dict[str, Session] = {}
        #: live (or opening) lease sessions by lease id: while any, direct sessions are refused.
        self._leases: dict[str, int] = {}
        self.urls: list[str] = []
        self.exit_requested = asyncio.Event()
        self.exit_status = 0
        self._servers: list[asyncio.AbstractServer | Listener] = []
        self._unix_paths: list[Path] = []
        self._hook_dir: Path | None = None
        self._hook_url: str | None = None
        self._closing = False
        #: told about sessions and hooks (:class:`~tether.exporter.ExporterObserver`).
        self.observers = Observers()

    # -- set-up -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Read the accepted token hashes and open the hooks' private socket.

        Raises:
            ConfigError: the token file cannot be read.
        """
        if self.config.tokens is not None or self._extra_hashes:
            configured = self.config.tokens.accepted_hashes() if self.config.tokens else []
            self._hashes = [*configured, *self._extra_hashes]
        hooks = self.config.hooks
        if hooks.before_lease or hooks.after_lease:
            self._hook_dir = Path(tempfile.mkdtemp(prefix="tether-hooks-"))
            path = self._hook_dir / "session.sock"
            loop = asyncio.get_running_loop()
            server = await loop.create_unix_server(
                self.protocol_factory(authenticate=False, existing_only=True), str(path)
            )
            self._servers.append(server)
            self._hook_url = f"unix://{path}"

    async def listen(self, address: Address | str) -> str:
        """Accept clients at ``address`` (``tls://``, ``tcp://`` or ``unix://``).

        Returns:
            The URL clients connect to (with the real port when ``0`` was asked for).

        Raises:
            ConfigError: bad address, or TLS files missing or wrong.
            OSError: the address cannot be bound.
        """
        if isinstance(address, str):
            address = parse_address(address)
        factory = self.protocol_factory()
        context = None
        if address.scheme == "unix":
            path = Path(address.path)
            _remove_stale_socket(path)
            sock = bind_unix(str(path))
            self._unix_paths.append(path)
            url = f"unix://{path}"
        else:
            context = self._ssl_context() if address.scheme == "tls" else None
            sock = bind_tcp(address.host, address.port)
            port = sock.getsockname()[1]
            host = f"[{address.host}]" if ":" in address.host else address.host
            url = f"{address.scheme}://{host}:{port}"
        server = await serve_listener(
            sock,
            factory,
            self.limits,
            ssl_context=context,
            handshake_timeout=self.handshake_timeout,
        )
        self._servers.append(server)
        self.urls.append(url)
        log.info("exporter %s listening on %s", self.config.name, url)
        tls = self.config.tls
        if address.scheme != "unix" and self._hashes is None and (tls is None or tls.ca is None):
            log.warning(
                "exporter %s serves %s with no tokens and no client certificates: anyone "
                "who can reach the port can drive its devices (add `tokens:` or `tls: {ca:}`)",
                self.config.name,
                url,
            )
        return url

    def _ssl_context(self) -> ssl.SSLContext:
        tls = self.config.tls
        if tls is None:
            raise ConfigError("a tls:// address needs a `tls:` section (cert and key)")
        return server_ssl_context(tls.cert, tls.key, tls.ca, require_client_cert=tls.ca is not None)

    # -- connections --------------------------------------------------------------------------

    def protocol_factory(
        self,
        *,
        session_id: str | None = None,
        authenticate: bool = True,
        existing_only: bool = False,
    ) -> Callable[[], ServerProtocol]:
        """A protocol factory for ``loop.create_server`` or any transport you accept yourself.

        Args:
            session_id: bind every connection to this session (the controller's relay).
            authenticate: check the bearer token (off for the relay and the hooks socket,
                whose callers are authenticated otherwise).
            existing_only: refuse connections that do not name an open session.
        """
        # Dead within ``keepalive``: PING after half of it in silence, then wait the other
        # half, but never less than 2 s (an idle client answers within 1 s).
        ping_after = self.keepalive / 2
        ping_wait = max(self.keepalive / 2, _MIN_PING_WAIT)

        async def resolve(meta: dict[str, Any]) -> tuple[Session, dict[str, Any]]:
            return await self._resolve(
                meta, authenticate=authenticate, bound=session_id, existing_only=existing_only
            )

        return lambda: ServerProtocol(
            resolve,
            keepalive=ping_after,
            keepalive_timeout=ping_wait,
            handshake_timeout=self.handshake_timeout,
            max_backlog=self.config.limits.max_backlog,
        )

    async def serve_connection(
        self,
        sock: socket.socket,
        *,
        session_id: str | None = None,
        authenticate: bool = True,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Serve one already-connected socket until its connection ends.

        The controller's relay hands over the socket it spliced for a lease with
        ``session_id`` (from :meth:`open_session`) and ``authenticate=False``.

        Args:
            sock: a connected stream socket (ownership passes to the exporter).
            session_id: serve this session instead of the one the client's Hello names.
            authenticate: check the client's bearer token.
            ssl_context: wrap the socket in TLS (server side) first.
        """
        loop = asyncio.get_running_loop()
        factory = self.protocol_factory(session_id=session_id, authenticate=authenticate)
        _, protocol = await loop.connect_accepted_socket(factory, sock, ssl=ssl_context)
        await protocol.closed.wait()

    async def _resolve(
        self, meta: dict[str, Any], *, authenticate: bool, bound: str | None, existing_only: bool
    ) -> tuple[Session, dict[str, Any]]:
        if authenticate and self._hashes is not None:
            token = meta.get("token")
            if not isinstance(token, str) or not token:
                raise AuthenticationFailed("a bearer token is required")
            if not verify_token(token, self._hashes):
                raise AuthenticationFailed("invalid token")
        if self._closing:
            raise AuthenticationFailed("the exporter is shutting down")
        direct = bound is None and not existing_only  # not the relay, not the hooks' socket
        if direct and self._leases:
            # One user at a time: the controller's lease holder has the board.
            raise AuthenticationFailed(_LEASED_REFUSAL.format(name=self.config.name))
        named = meta.get("session")
        if bound is not None and named is not None and named != bound:
            # A lease holder re-attaching to the session it had: this process never served it.
            raise SessionLost(
                f"the exporter {self.config.name} restarted; the session {named} is gone"
            )
        wanted = bound or named
        if wanted is not None:
            session = self.sessions.get(str(wanted))
            # Hook connections may join a session that is closing (after_lease runs then).
            if session is None or (session.closing and not existing_only):
                raise AuthenticationFailed(f"no open session {wanted!r} (it has ended)")
        elif existing_only:
            raise AuthenticationFailed("this socket serves existing sessions only")
        else:
            session = await self._new_session(None, grace=self.session_grace)
            if self._leases:  # a lease began while its drivers started: it loses
                await self.close_session(session.id, reason=_LEASED_NOW)
                raise AuthenticationFailed(_LEASED_REFUSAL.format(name=self.config.name))
        reply = {
            "report": session.host.report(),
            "session": session.id,
            "exporter": self.config.name,
            "labels": dict(self.config.labels),
        }
        return session, reply

    # -- sessions -----------------------------------------------------------------------------

    async def open_session(self, lease_id: str | None = None) -> Session:
        """Open a session for a lease: a fresh driver tree, started, then ``before_lease``.

        It stays open, with or without connections, until :meth:`close_session`. With a
        ``lease_id`` (a controller lease) the exporter is leased until then: direct sessions
        open now are ended, and new ones are refused (``AuthenticationFailed``). A session of
        another lease still open or closing (its ``after_lease`` running) is waited for: the
        next holder's drivers start only once the last holder's have stopped.

        Raises:
            HookFailed: ``before_lease`` failed and ``on_failure`` is ``end_lease`` or
                ``exit`` (the session was closed again).
            Exception: whatever a driver's ``start`` raised (started drivers were stopped).
        """
        if lease_id is None:  # a session kept open by its owner (`tether shell`)
            return await self._new_session(None, grace=None)
        self._leases[lease_id] = self._leases.get(lease_id, 0) + 1
        try:
            # Direct sessions end: from now on the lease holder alone drives the board.
            direct = [s.id for s in self.sessions.values() if s.owned_by_connections]
            for session_id in direct:
                log.warning("session %s: ended, the exporter is leased now", session_id)
                await self.close_session(session_id, reason=_LEASED_NOW)
            await self._earlier_leases_closed(lease_id)
            session = await self._new_session(lease_id, grace=None)
        except BaseException:
            self._lease_done(lease_id)
            raise
        session.closed_callbacks.append(lambda: self._lease_done(lease_id))
        return session

    async def _earlier_leases_closed(self, lease_id: str) -> None:
        """Wait until no session of another lease is open or closing. The controller grants
        the next lease as soon as the last one ended, often before the agent has closed the
        last one's session: without this wait, both trees (and both leases' hooks) would run
        at once for a moment, or for as long as ``after_lease`` takes."""
        while True:
            earlier = [
                each
                for each in [*self.sessions.values(), *self._ending.values()]
                if each.lease_id is not None and each.lease_id != lease_id
            ]
            if not earlier:
                return
            log.info(
                "lease %s: waiting for the session of lease %s to close",
                lease_id,
                ", ".join(sorted({str(each.lease_id) for each in earlier})),
            )
            await asyncio.gather(*(each.closed.wait() for each in earlier))

    def _lease_done(self, key: str) -> None:
        count = self._leases.pop(key, 0) - 1
        if count > 0:
            self._leases[key] = count

    async def _new_session(self, lease_id: str | None, *, grace: float | None) -> Session:
        root, uses = build_tree(self.config)
        host = DriverHost(root, self.config.name, uses=uses)
        await host.start()
        session = Session(
            secrets.token_urlsafe(16),
            host,
            lease_id=lease_id,
            grace=grace,
            on_idle=lambda s: self.close_session(s.id),
        )
        self.sessions[session.id] = session
        self.observers.emit("session_opened", session)
        log.info("session %s opened%s", session.id, f" for lease {lease_id}" if lease_id else "")
        command = self.config.hooks.before_lease
        if command:
            # OPENING: no grace timer while the hook's clients come and go.
            try:
                result = await self._run_hook("before_lease", command, session)
            except BaseException:  # cancelled: the client gave up waiting, or shutdown
                await self.close_session(session.id, run_after_hook=False)
                raise
            if not result.ok and self.config.hooks.on_failure is not OnFailure.WARN:
                await self.close_session(session.id, run_after_hook=False)
                # Its end is the lease's end reason, shown to the client: keep it short.
                why = result.describe()
                why = why if len(why) <= 1500 else why[:200] + " [...] " + why[-1200:]
                raise HookFailed(f"before_lease failed, the session was ended: {why}")
        if not session.closing:  # (the exporter may be shutting down meanwhile)
            session.opened()
        return session

    async def close_session(
        self, session_id: str, *, run_after_hook: bool = True, reason: str = "the session ended"
    ) -> None:
        """End a session: ``after_lease``, close its connections, stop its drivers.

        Unknown or already closed ids are ignored; a second call waits for the first.
        ``reason`` is what its clients are told.
        """
        session = self.sessions.get(session_id) or self._ending.get(session_id)
        if session is None:
            return
        if session.ending is None:
            session.ending = asyncio.ensure_future(self._end(session, run_after_hook, reason))
        await asyncio.shield(session.ending)

    async def _end(self, session: Session, run_after_hook: bool, reason: str) -> None:
        session.end()
        try:
            command = self.config.hooks.after_lease
            if command and run_after_hook:
                await self._run_hook("after_lease", command, session)
        finally:
            # Out of ``sessions`` before the drivers stop: whoever sees the drivers stopped
            # sees the session gone (``_ending`` still lets close_session wait for it).
            self.sessions.pop(session.id, None)
            self._ending[session.id] = session
            try:
                await session.close(reason)
            finally:
                del self._ending[session.id]
            self.observers.emit("session_closed", session)
            log.info("session %s closed", session.id)

    async def _run_hook(self, name: str, command: str, session: Session) -> HookResult:
        assert self._hook_url is not None
        env = {"TETHER_HOST": f"{self._hook_url}?session={session.id}"}
        if session.lease_id:
            env["TETHER_LEASE"] = session.lease_id
        self.observers.emit("hook_started", session, name)
        try:
            result = await run_hook(
                name,
                command,
                env=env,
                time_limit=self.config.hooks.timeout,
                on_output=lambda text: self.observers.emit("hook_output", session, name, text),
            )
        except BaseException:
            self.observers.emit("hook_finished", session, name, HookResult(name, None, ""))
            raise
        self.observers.emit("hook_finished", session, name, result)
        if result.ok:
            return result
        policy = self.config.hooks.on_failure
        log.warning("session %s: %s (on_failure: %s)", session.id, result.describe(), policy)
        if policy is OnFailure.EXIT:
            self.exit_status = 1
            self.exit_requested.set()
        return result

    # -- shutdown -----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop listening, end every session (hooks, then the drivers' stop), clean up."""
        self._closing = True
        # The hooks' socket (opened first) stays up until after_lease hooks have run.
        public = self._servers[1:] if self._hook_url else self._servers
        for server in public:
            server.close()
        await asyncio.gather(
            *(self.close_session(sid) for sid in [*self.sessions, *self._ending]),
            return_exceptions=True,
        )
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
        for path in self._unix_paths:
            with contextlib.suppress(OSError):
                path.unlink()
        if self._hook_dir is not None:
            shutil.rmtree(self._hook_dir, ignore_errors=True)


def _remove_stale_socket(path: Path) -> None:
    """Remove a socket file left by a dead exporter; refuse to touch anything else."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(mode):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            os.unlink(path)
            return
        finally:
            probe.close()
        raise OSError(f"{path}: another exporter is listening there")
    raise OSError(f"{path}: exists and is not a socket")
