"""Running an exporter as a process: listen, report readiness, stop cleanly on a signal.

Used by ``tether exporter serve``. SIGTERM and SIGINT end every session (``after_lease``
hooks, then the drivers' ``prepare_stop`` and ``stop``) before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Sequence

from tether.wire import Address, new_event_loop, tune_heap

from ._config import ExporterConfig
from ._exporter import Exporter

__all__ = ["run_exporter", "serve_exporter"]

log = logging.getLogger("tether.exporter")


async def serve_exporter(
    config: ExporterConfig,
    listen: Sequence[str | Address] = (),
    *,
    on_ready: Callable[[list[str]], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT (or a hook with ``on_failure: exit`` fails).

    Args:
        config: the exporter config; its ``listen`` addresses come first.
        listen: more addresses (from the command line).
        on_ready: called with the listening URLs once every listener is up.

    Returns:
        The exit status: 0 after a signal, 1 after a failed ``exit`` hook.

    Raises:
        ConfigError: no address to listen on (and no ``controller:``), or bad TLS files.
        OSError: an address cannot be bound.
        AuthenticationFailed: the controller rejected the exporter's token.
    """
    from tether.errors import ConfigError

    addresses = [*config.listen, *listen]
    if not addresses and config.controller is None:
        raise ConfigError(
            f"{config.source}: nothing to listen on; add a `listen:` list to the config "
            "or pass --listen (e.g. --listen tls://0.0.0.0:7443), or add a `controller:` "
            "section to serve leases through the controller"
        )
    exporter = Exporter(config)
    metrics = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await exporter.start()
        if config.metrics_listen is not None:
            from ._metrics import ExporterMetrics

            metrics = ExporterMetrics(config.name)
            exporter.observers.append(metrics)
            await metrics.listen(config.metrics_listen)
        for address in addresses:
            await exporter.listen(address)
        if on_ready is not None:
            on_ready(list(exporter.urls))
        waiters: list[asyncio.Future[object]] = [
            asyncio.ensure_future(stop.wait()),
            asyncio.ensure_future(exporter.exit_requested.wait()),
        ]
        if config.controller is not None:  # register and serve leases (outbound only)
            from ._agent import run_agent

            waiters.append(asyncio.ensure_future(run_agent(exporter, config)))
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        if len(waiters) > 2 and waiters[2].done() and not waiters[2].cancelled():
            waiters[2].result()  # the agent stopped on its own: a rejected token
        log.info("exporter %s: shutting down", config.name)
    finally:
        await exporter.aclose()
        if metrics is not None:
            await metrics.aclose()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)
    return exporter.exit_status


def run_exporter(
    config: ExporterConfig,
    listen: Sequence[str | Address] = (),
    *,
    on_ready: Callable[[list[str]], None] | None = None,
) -> int:
    """:func:`serve_exporter` on a new event loop (uvloop when installed); blocks. The
    process's heap is tuned for large frames first (:func:`tether.wire.tune_heap`)."""
    tune_heap()
    loop = new_event_loop()
    try:
        return loop.run_until_complete(serve_exporter(config, listen, on_ready=on_ready))
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
