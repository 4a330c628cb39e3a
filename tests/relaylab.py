"""Test harness for the relay and the agent (tests and ``bench.relay_bench`` import it).

It lives in ``tests/``, not in the package: it grants leases from a table instead of asking a
controller, so it is a lab for tether's own tests, not something to run a lab with. It uses
only public fronts (``tether.exporter``, ``tether.client``, ``tether.wire``...).

``RelayLab``: a router relay, exporter-side lease relays and clients in one process.

For the relay's tests and benchmark: the router runs on its own loop thread with a table of
leases as its ``authorize`` callback (the controller's checks are tested with the controller);
each exporter side serves a fresh driver tree over its outbound dials, on another loop thread.

``run_agent_exporter(config_text)``: a real exporter with its controller agent (for tests
against a real controller from ``tether.controller.testing.run_controller(relay=True)``), and
``acquire_lease(ctl, token)``: a granted lease of that exporter, by the HTTP API.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from tether.client import dial_relay
from tether.controller import RelayGrant, RelayRouter
from tether.driver import ClientPolicy, Driver, DriverClient, DriverHost, build_client_tree
from tether.errors import AuthenticationFailed, RelayRefused
from tether.exporter import ControllerAgent, Exporter, LeaseRelay, Session, parse_config
from tether.security import (
    LabCerts,
    SessionIdentity,
    client_ssl_context,
    init_lab_certs,
    server_ssl_context,
)
from tether.testing._serve import LocalSession
from tether.wire import ClientConnection, LoopThread, RelayHello, ServerProtocol

__all__ = ["AgentExporter", "RelayLab", "acquire_lease", "run_agent_exporter"]

T = TypeVar("T")


@dataclass
class _Lease:
    client_token: str
    exporter_token: str
    exporter: str
    relay: LeaseRelay | None = None
    task: asyncio.Task[None] | None = None
    host: DriverHost | None = None
    connections: list[ClientConnection] = field(default_factory=list)


class RelayLab:
    """A relay and its two sides on loopback. Use as a context manager.

    Args:
        certs_dir: where to write a lab CA and certificates (``tls=True``).
        tls: dial the relay over TLS (the real set-up) or plain TCP.
        pair_timeout: the router's wait for an exporter dial.
        router_url: use the router at this URL (another process) instead of starting one.
        listen_host: the address the router listens on.
        listen_port: its port (0: any free one).
    """

    def __init__(
        self,
        certs_dir: Path,
        *,
        tls: bool = True,
        pair_timeout: float = 10.0,
        router_url: str | None = None,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
    ) -> None:
        self.router_thread = LoopThread("relay-router")
        self.exporter_thread = LoopThread("relay-exporter")
        self.leases: dict[str, _Lease] = {}
        self.client_context: ssl.SSLContext | None = None
        #: the exporter sides' certificate in end-to-end TLS sessions (``tls=True``).
        self.identity: SessionIdentity | None = None
        server_context: ssl.SSLContext | None = None
        if tls:
            self.identity = SessionIdentity.generate()
            if (certs_dir / "ca.pem").exists():
                names = ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")
                certs = LabCerts(*(certs_dir / name for name in names))
            else:
                certs = init_lab_certs(certs_dir)
            server_context = server_ssl_context(certs.server_cert, certs.server_key)
            self.client_context = client_ssl_context(certs.ca)
        self.router = RelayRouter(self._authorize, pair_timeout=pair_timeout)
        if router_url is not None:  # the router runs elsewhere (another process)
            self.url = router_url
            return
        scheme = "tls" if tls else "tcp"
        address = self.router_thread.run(
            self.router.start(f"{scheme}://{listen_host}:{listen_port}", server_context)
        )
        self.url = str(address)

    async def _authorize(self, hello: RelayHello) -> RelayGrant:
        lease = self.leases.get(hello.lease)
        tokens = {each.client_token for each in self.leases.values()}
        tokens |= {each.exporter_token for each in self.leases.values()}
        if hello.token not in tokens:
            raise AuthenticationFailed("unknown token")
        if lease is None:
            raise RelayRefused(f"no lease {hello.lease!r}", code="forbidden")
        wanted = lease.client_token if hello.role == "client" else lease.exporter_token
        if hello.token != wanted:
            raise RelayRefused(f"not the {hello.role} of lease {hello.lease}", code="forbidden")
        return RelayGrant(hello.lease, identity=hello.role, exporter=lease.exporter)

    def add_lease(
        self,
        lease_id: str,
        driver_factory: Callable[[], Driver] | None,
        *,
        client_token: str = "client-token",
        exporter_token: str = "exporter-token",
        exporter: str = "bench-1",
        relay_url: str | None = None,
    ) -> _Lease:
        """Grant a lease; with ``driver_factory``, start the exporter side serving its tree."""
        lease = _Lease(client_token, exporter_token, exporter)
        self.leases[lease_id] = lease
        if driver_factory is not None:
            self.exporter_thread.run(
                self.start_exporter(lease_id, lease, driver_factory(), relay_url or self.url)
            )
        return lease

    async def start_exporter(
        self, lease_id: str, lease: _Lease, driver: Driver, relay_url: str
    ) -> None:
        """(On ``exporter_thread``.) Start serving ``driver`` for the lease, over dials to
        ``relay_url``; returns once the first idle dial waits at the router."""
        host = DriverHost(driver, "root")
        await host.start()
        session = LocalSession(host)
        lease.host = host
        lease.relay = LeaseRelay(
            relay_url,
            lease_id,
            lease.exporter_token,
            lambda: ServerProtocol(session.resolve),
            ssl_context=self.client_context,
            identity=self.identity,
        )
        lease.task = asyncio.get_running_loop().create_task(lease.relay.run())
        await lease.relay.ready.wait()

    def connect(
        self, lease_id: str, token: str | None = None, relay_url: str | None = None
    ) -> DriverClient:
        """Dial the relay as the lease's client and return the client tree."""
        lease = self.leases[lease_id]
        sock, _ = dial_relay(
            relay_url or self.url,
            lease_id,
            token if token is not None else lease.client_token,
            ssl_context=self.client_context,
        )
        connection = ClientConnection(sock, keepalive=None)
        lease.connections.append(connection)
        return build_client_tree(
            connection.server_meta["report"], connection, ClientPolicy(unsafe=True)
        )

    def end_lease(self, lease_id: str) -> int:
        """End the lease at the router (what the controller does); returns pairs cut."""

        async def end() -> int:
            return self.router.end_lease(lease_id)

        return self.router_thread.run(end())

    def close(self) -> None:
        for lease in self.leases.values():
            for connection in lease.connections:
                connection.close()

        async def stop_exporters() -> None:
            for lease in self.leases.values():
                if lease.task is not None:
                    lease.task.cancel()
                    await asyncio.gather(lease.task, return_exceptions=True)
                if lease.host is not None:
                    await lease.host.stop()

        try:
            self.exporter_thread.run(stop_exporters())
            self.router_thread.run(self.router.close())
        finally:
            self.exporter_thread.close()
            self.router_thread.close()

    def __enter__(self) -> RelayLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AgentExporter:
    """An :class:`~tether.exporter.Exporter` with its controller agent, on a loop thread.

    Made by :func:`run_agent_exporter`. ``agent`` and ``exporter`` live on ``thread``'s loop;
    use :meth:`run` to await things there (``agent.registered.wait()``...).
    """

    def __init__(self, thread: LoopThread, exporter: Exporter, agent: ControllerAgent) -> None:
        self.thread = thread
        self.exporter = exporter
        self.agent = agent
        self.task: asyncio.Task[None] | None = None

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the exporter's loop and wait for it."""
        return self.thread.run(coro, timeout)

    def session_of(self, lease_id: str) -> Session:
        """The session serving ``lease_id`` (the client reached it, so it exists)."""

        async def find() -> Session:
            return self.exporter.sessions[self.agent.sessions[lease_id]]

        return self.run(find())

    def wait_session_closed(self, session: Session) -> None:
        """Block until the exporter closed ``session`` (lease ended, after_lease ran)."""
        self.run(session.closed.wait())


@contextmanager
def run_agent_exporter(
    config_text: str, *, base_dir: Path | None = None, long_poll: float = 30.0
) -> Iterator[AgentExporter]:
    """Run an exporter whose config (YAML text, with a ``controller:`` section as printed by
    ``tether admin create-exporter`` plus ``export:``) registers with the controller.

    Waits until the agent registered; at exit the agent stops and every session closes.
    """
    config = parse_config(config_text, base_dir=base_dir)
    assert config.controller is not None
    thread = LoopThread("agent-exporter")
    exporter = Exporter(config)
    agent_box: list[ControllerAgent] = []

    async def start() -> AgentExporter:
        await exporter.start()
        agent = ControllerAgent.from_config(exporter, config, long_poll=long_poll)
        agent_box.append(agent)
        running = AgentExporter(thread, exporter, agent)
        running.task = asyncio.get_running_loop().create_task(agent.run())
        registered = asyncio.ensure_future(agent.registered.wait())
        await asyncio.wait({registered, running.task}, return_when=asyncio.FIRST_COMPLETED)
        if running.task.done():
            registered.cancel()
            running.task.result()  # raises why the agent stopped
        return running

    async def stop(running: AgentExporter | None) -> None:
        if running is not None and running.task is not None:
            running.task.cancel()
            await asyncio.gather(running.task, return_exceptions=True)
        await exporter.aclose()

    running: AgentExporter | None = None
    try:
        running = thread.run(start(), 60)
        yield running
    finally:
        try:
            thread.run(stop(running), 60)
        finally:
            thread.close()


def acquire_lease(ctl: Any, token: str, selector: str = "board=rpi4") -> str:
    """Ask ``ctl`` (a ``ControllerHandle``) for a 120 s lease as ``token``'s client and wait
    until it is granted; returns its id."""
    with ctl.http(token) as http:
        lease = http.post("/v1/leases", json={"selector": selector, "duration": 120}).json()
        while lease["state"] == "pending":
            lease = http.get(f"/v1/leases/{lease['id']}?wait=30&state=pending").json()
    assert lease["state"] == "ready", lease
    return str(lease["id"])


def release_fifo(fifo: Path, text: str) -> None:
    """Write to ``fifo`` once someone opens it to read, from a daemon thread: the test never
    blocks on it (nobody may ever read, when what should have started did not)."""

    def write() -> None:
        with open(fifo, "w") as sink:
            sink.write(text)

    threading.Thread(target=write, daemon=True).start()
