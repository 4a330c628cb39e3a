"""Prometheus metrics for the controller (``GET /metrics``).

Gauges (leases by state, queue length, exporters by status) are read from the database at
scrape time in two aggregate queries, so every replica reports the same lab-wide figures.
Histograms and counters of grants and finished leases are fed at scrape time too, from the
leases granted or ended since the previous scrape (one indexed read each): a grant made by
any replica is counted once per scraped replica, so scrape one replica (or aggregate with
``max``). API latency is per process, observed by a middleware.

Metric names are listed in docs/dashboard.md ("Metrics").
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

from ._views import LabCounts

if TYPE_CHECKING:
    from ._controller import Controller

__all__ = ["ControllerMetrics", "RequestTimer"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 4 * 3600)
_DURATION_BUCKETS = (1, 10, 60, 300, 900, 1800, 3600, 2 * 3600, 4 * 3600, 8 * 3600, 24 * 3600)


class ControllerMetrics:
    """The controller's metrics registry.

    Args:
        controller: whose database is read at scrape time.

    Raises:
        ImportError: prometheus-client is not installed (``pip install 'tether[controller]'``).
    """

    def __init__(self, controller: Controller) -> None:
        import prometheus_client as prom
        from prometheus_client.core import GaugeMetricFamily

        self._prom = prom
        self._gauge_family = GaugeMetricFamily
        self.controller = controller
        self.registry = prom.CollectorRegistry(auto_describe=True)
        self._since = controller.clock()
        self._counts: LabCounts | None = None
        self.wait = prom.Histogram(
            "tether_lease_wait_seconds",
            "Time from a lease request to its grant.",
            buckets=_WAIT_BUCKETS,
            registry=self.registry,
        )
        self.duration = prom.Histogram(
            "tether_lease_duration_seconds",
            "Time from a lease's grant to its end (released, expired or ended).",
            buckets=_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.grants = prom.Counter("tether_lease_grants", "Leases granted.", registry=self.registry)
        self.api = prom.Histogram(
            "tether_api_request_duration_seconds",
            "HTTP API latency by route template, method and status.",
            ["route", "method", "status"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60),
            registry=self.registry,
        )
        self.registry.register(_LabCollector(self))

    async def scrape(self) -> bytes:
        """Read the lab's figures and render the exposition text."""
        views = self.controller.store.views
        now = self.controller.clock()
        since, self._since = self._since, now
        self._counts = await self.controller.run_read(views.counts)
        for created, granted in await self.controller.run_read(views.granted_since, since):
            self.grants.inc()
            self.wait.observe(max(0.0, granted - created))
        for granted, ended in await self.controller.run_read(views.finished_since, since):
            self.duration.observe(max(0.0, ended - granted))
        data: bytes = self._prom.generate_latest(self.registry)
        return data

    @property
    def content_type(self) -> str:
        """The exposition format's content type."""
        value: str = self._prom.CONTENT_TYPE_LATEST
        return value

    def families(self) -> Iterator[Any]:
        """The gauge families from the last scrape's counts."""
        counts = self._counts
        if counts is None:
            return
        leases = self._gauge_family(
            "tether_leases", "Leases in the database by state.", labels=["state"]
        )
        for state, count in counts.leases.items():
            leases.add_metric([state], count)
        yield leases
        yield self._gauge_family(
            "tether_queue_length",
            "Lease requests waiting in the queue.",
            value=counts.leases.get("pending", 0),
        )
        exporters = self._gauge_family(
            "tether_exporters", "Exporters by status.", labels=["status"]
        )
        for status, count in counts.exporters.items():
            exporters.add_metric([status], count)
        yield exporters


class RequestTimer:
    """ASGI middleware timing each HTTP request into ``metrics.api``, by route template.

    A plain ASGI wrapper: it sees the status in ``http.response.start`` and reads the route
    the router matched from the scope afterwards, with none of the per-request task and
    streams a ``BaseHTTPMiddleware`` costs (on every heartbeat).
    """

    def __init__(self, app: ASGIApp, metrics: ControllerMetrics) -> None:
        self.app = app
        self.api = metrics.api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, noting_status)
        path = getattr(scope.get("route"), "path", None) or "unmatched"
        self.api.labels(path, scope["method"], str(status)).observe(time.perf_counter() - started)


class _LabCollector:
    """Yields the gauges computed by the last :meth:`ControllerMetrics.scrape`."""

    def __init__(self, metrics: ControllerMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        yield from self._metrics.families()

    def describe(self) -> list[Any]:
        return []
