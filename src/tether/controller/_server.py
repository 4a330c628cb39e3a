"""Running the controller: uvicorn on a socket we bind, TLS, the relay, the ready line.

We bind the listening socket ourselves (so ``--listen https://127.0.0.1:0`` works and the real
port is known) and hand it to uvicorn. The ready line goes out only once uvicorn serves on it
and the relay (when asked for) listens too; tests wait for that line, never for a delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from tether.errors import ConfigError

from ._app import create_app
from ._controller import Controller
from ._database import Database
from ._limits import Limits, protocol_class

__all__ = ["ServeOptions", "parse_listen", "serve"]


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What ``tether controller serve`` was asked for."""

    listen: str = "https://127.0.0.1:8443"
    database: str = ""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    heartbeat_interval: float = 10.0
    heartbeat_timeout: float = 30.0
    relay_listen: str | None = None
    limits: Limits = field(default_factory=Limits)


def parse_listen(url: str) -> tuple[str, str, int]:
    """Split ``https://host:port`` / ``http://host:port`` into scheme, host, port.

    Raises:
        ConfigError: another scheme, or no host or port.
    """
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad --listen {url!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise ConfigError(
            f"bad --listen {url!r}: expected https://HOST:PORT (or http:// for a plain socket)"
        )
    return parts.scheme, parts.hostname, port


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, on_started: Callable[[], Any]) -> None:
        super().__init__(config)
        self._on_started = on_started
        self.controller: Controller | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and not self.should_exit:
            await self._on_started()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Long-polls would hold the graceful shutdown for up to a minute: answer them now.
        if self.controller is not None:
            self.controller.wake_all()
        # Idle keep-alive TLS connections can take seconds to finish their close handshake;
        # nothing is in flight on them, so drop them now.
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if transport is not None and (cycle is None or cycle.response_complete):
                transport.abort()
        await super().shutdown(sockets)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(
    options: ServeOptions,
    *,
    ready: Callable[[str], None],
    server_created: Callable[[uvicorn.Server], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> None:
    """Serve until told to stop (SIGINT/SIGTERM in the main thread, or ``should_exit``).

    Args:
        options: listen address, database URL, TLS files, timing, relay.
        ready: called with the ready line once everything listens.
        server_created: gets the uvicorn server (to stop it from another thread).
        clock: seconds since the epoch (tests pass a fake one).

    Raises:
        ConfigError: bad listen address, TLS files, or database URL.
    """
    scheme, host, port = parse_listen(options.listen)
    if scheme == "https" and (options.tls_cert is None or options.tls_key is None):
        raise ConfigError(
            f"--listen {options.listen} needs --tls-cert and --tls-key (make a lab CA with "
            "'tether certs init'), or listen on http:// for a plain socket"
        )
    ssl_context = None
    if scheme == "https":
        from tether.security import server_ssl_context

        assert options.tls_cert is not None and options.tls_key is not None
        ssl_context = server_ssl_context(options.tls_cert, options.tls_key)
    database = Database(options.database)
    controller = Controller(
        database,
        heartbeat_interval=options.heartbeat_interval,
        heartbeat_timeout=options.heartbeat_timeout,
        clock=clock or time.time,
        limits=options.limits,
    )
    await controller.start()
    sock = _bind(host, port)
    url = f"{scheme}://{host}:{sock.getsockname()[1]}"
    relay_task: asyncio.Task[None] | None = None
    relay_started = asyncio.get_running_loop().create_future()

    def relay_up(relay_url: str) -> None:
        controller.relay_url = relay_url
        if not relay_started.done():
            relay_started.set_result(relay_url)

    async def started() -> None:
        nonlocal relay_task
        line = f"tether controller ready at {url}"
        if options.relay_listen is not None:
            run_relay = _relay_runner()
            relay_task = asyncio.get_running_loop().create_task(
                run_relay(controller, options.relay_listen, ssl_context, relay_up)
            )
            done, _ = await asyncio.wait({relay_task, relay_started}, return_when="FIRST_COMPLETED")
            if relay_task in done:
                relay_task.result()
                raise ConfigError("the relay stopped before it listened")
            line += f" relay {controller.relay_url}"
        ready(line)

    _raise_fd_limit()
    config = uvicorn.Config(
        create_app(controller, options.limits),
        http=protocol_class(options.limits),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
        # Clients keep connections between long-polls and lease calls; the 5 s default closes
        # them under their feet ("server disconnected without sending a response").
        timeout_keep_alive=120,
        ssl_certfile=None if scheme == "http" else str(options.tls_cert),
        ssl_keyfile=None if scheme == "http" else str(options.tls_key),
    )
    server = _Server(config, started)
    server.controller = controller
    if server_created is not None:
        server_created(server)
    try:
        await server.serve(sockets=[sock])
    finally:
        if relay_task is not None:
            relay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay_task
        sock.close()
        await controller.close()


def _raise_fd_limit() -> None:
    """Use the hard descriptor limit: connection caps, not the soft 1,024, decide who waits."""
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 65536
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _relay_runner() -> Any:
    try:
        module = importlib.import_module("tether.controller._router")
    except ImportError as exc:
        raise ConfigError(f"--relay-listen: the router relay is not available ({exc})") from exc
    run_relay = getattr(module, "run_relay", None)
    if run_relay is None:
        raise ConfigError("--relay-listen: tether.controller._router has no run_relay")
    return run_relay
