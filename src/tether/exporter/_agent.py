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
  leaves the running leases alone; an unknown token stops it, and so does a refusal because
  another agent serves this exporter (409: one agent per exporter identity).
* **relay dials**: a :class:`~tether.exporter.LeaseRelay` (``_lease_relay.py``) keeps one idle
  dial open to the controller's relay for its lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tether.driver import DriverHost
from tether.errors import (
    AuthenticationFailed,
    ConfigError,
    ConnectFailed,
    ControllerError,
    HookFailed,
)
from tether.http_errors import controller_error, map_http_errors
from tether.security import SessionIdentity, client_ssl_context
from tether.wire import (
    relay_url_for,
)

from ._config import ExporterConfig, build_tree
from ._exporter import Exporter
from ._health import HealthResult, run_health_check
from ._hook_reports import HookReports
from ._lease_relay import LeaseRelay

if TYPE_CHECKING:
    import httpx

__all__ = ["ControllerAgent", "read_exporter_token", "run_agent"]

log = logging.getLogger("tether.exporter.agent")

#: The header naming the agent instance in every request to the controller.
_AGENT_HEADER = "Tether-Agent"  # this process's id: the controller keeps one agent an exporter
#: Seconds a stopping agent waits for the controller to take its "offline".
_OFFLINE_TIMEOUT = 3.0

# -- HTTP to the controller -------------------------------------------------------------------


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
        #: this agent's random id, sent with every request (``Tether-Agent``) so that the
        #: controller can tell two agents of one exporter identity apart.
        self.instance = secrets.token_hex(16)
        #: set once the controller refused this agent (another serves the exporter).
        self.refused = False
        self.registered = asyncio.Event()
        self.heartbeat_interval = 10.0
        #: lease id -> the session serving it
        self.sessions: dict[str, str] = {}
        #: the last health check's outcome (``health:`` in the config), once one ran.
        self.health: HealthResult | None = None
        self._health_lock = asyncio.Lock()
        self._stopping = False
        self._background: set[asyncio.Future[None]] = set()
        self._hook_reports = HookReports()
        exporter.observers.append(self._hook_reports)

    @classmethod
    def from_config(
        cls, exporter: Exporter, config: ExporterConfig, **options: Any
    ) -> ControllerAgent:
        """The agent of ``config.controller``: its endpoint, its token (``token`` or
        ``token_file``) and its CA. The one place an agent is built from a config.

        Args:
            exporter: the exporter whose sessions serve the leases.
            config: the exporter's config, with a ``controller:`` section.
            options: other arguments of the constructor (``long_poll``, ``retry``...).

        Raises:
            ConfigError: no ``controller:`` section, or no readable token.
        """
        if config.controller is None:
            raise ConfigError(f"{config.source}: no `controller:` section")
        return cls(
            exporter,
            config,
            endpoint=config.controller.endpoint,
            token=read_exporter_token(config),
            ca=config.controller.ca,
            **options,
        )

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
            ControllerError: the controller refused this agent because another one serves
                the same exporter identity (status 409; fatal: retrying would fight it).
        """
        if self._identity is None:  # before the first lease, which should not wait for it
            self._identity = await asyncio.to_thread(SessionIdentity.generate)
        verify: ssl.SSLContext | bool = self._ssl_context or True
        headers = {"Authorization": f"Bearer {self._token}", _AGENT_HEADER: self.instance}
        import httpx  # lazily: `import tether.exporter` stays light

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
                        if isinstance(exc, ControllerError) and exc.status == 409:
                            raise self._refused(exc) from exc
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
                if was_registered and not self.refused:
                    await self._say_offline()

    def _refused(self, exc: ControllerError) -> ControllerError:
        """The controller will not have this agent: another serves this exporter. Stop (and
        never say ``offline``: that would be about the other agent's exporter)."""
        self.refused = True
        name = self.name or self.config.name
        message = (
            f"controller {self.endpoint} refused this agent of exporter {name!r}: "
            f"{exc.message} -- another agent with this exporter's token serves it (one agent "
            "per exporter identity); this one stops"
        )
        log.error("%s", message)
        return ControllerError(message, code=exc.code, status=exc.status, **exc.details)

    async def _say_offline(self) -> None:
        """Tell the controller we go away, so it stops granting us at once (best effort: the
        heartbeat time-out says it anyway)."""
        try:
            async with asyncio.timeout(_OFFLINE_TIMEOUT):
                await self._request("POST", "/v1/exporter/heartbeat", json={"status": "offline"})
        except (TimeoutError, ConnectFailed, ControllerError) as exc:
            log.info("could not tell %s we go offline: %s", self.endpoint, exc)

    async def _send_json(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request(method, path, json=body)

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
        tasks.append(loop.create_task(self._hook_reports.send_forever(self._send_json)))
        if self.config.health is not None:
            tasks.append(loop.create_task(self._health_checks(self.config.health.interval)))
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

    # -- health -------------------------------------------------------------------------------

    async def _health_checks(self, interval: float) -> None:
        """A check at once, then every ``interval`` seconds while no lease runs."""
        while True:
            if not self._leases:
                await self.check_health()
            await asyncio.sleep(interval)

    async def check_health(self) -> HealthResult | None:
        """Run the config's health check now and report it to the controller.

        The exporter says ``hook`` meanwhile (nobody is granted it) and until the controller
        has the outcome, so a failing board is never granted between the two.

        Returns:
            The outcome; ``None`` when the config has no ``health:`` section.

        Raises:
            ConnectFailed, ControllerError: the report did not reach the controller.
        """
        if self.config.health is None:
            return None
        async with self._health_lock, self._hook_status("health"):
            result = await run_health_check(self.config)
            self.health = result
            self.exporter.observers.emit("health_checked", result)
            body = {"ok": result.ok, "output": result.output}
            await self._request("POST", "/v1/exporter/health", json=body)
            # Logged once the controller has it (tests wait for these lines).
            if result.ok:
                log.info("health check passed")
            else:
                log.warning("health check failed: %s", result.output)
        return result

    async def _after_lease(self, session_id: str) -> None:
        """Once the session closed (its task may have been cancelled meanwhile): still
        ``hook`` until ``after_lease`` is done, then the health check."""
        async with self._hook_status(self.config.hooks.after_lease):
            await self.exporter.close_session(session_id)  # (waits for the first call)
        if self._stopping or self.config.health is None:
            return
        try:
            await self.check_health()
        except (ConnectFailed, ControllerError) as exc:  # the next periodic check reports
            log.warning("health check after a lease not reported: %s", exc)

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
            async with self._health_lock, self._hook_status(hooks.before_lease):
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
            try:
                async with self._hook_status(hooks.after_lease):
                    await self.exporter.close_session(session.id)
                log.info("lease %s: session %s closed", lease_id, session.id)
            finally:
                # On its own task: this one is cancelled again by each long-poll answer
                # that no longer lists the lease (close_session is shielded, this is not).
                check = asyncio.ensure_future(self._after_lease(session.id))
                self._background.add(check)
                check.add_done_callback(self._background.discard)

    async def _stop_all(self) -> None:
        self._stopping = True
        tasks = list(self._leases.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        checks = list(self._background)  # health checks after leases: not reported now
        for check in checks:
            check.cancel()
        await asyncio.gather(*checks, return_exceptions=True)


async def run_agent(exporter: Exporter, config: ExporterConfig) -> None:
    """Run the controller agent of ``config.controller`` for ``exporter`` until cancelled.

    ``tether exporter serve`` runs this beside its listeners when the config has a
    ``controller:`` section.

    Raises:
        ConfigError: no ``controller:`` section or no token.
        AuthenticationFailed: the controller rejects the token.
    """
    await ControllerAgent.from_config(exporter, config).run()
