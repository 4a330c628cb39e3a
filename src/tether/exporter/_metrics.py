"""Prometheus metrics of one exporter (``metrics_listen: HOST:PORT`` in its config).

An :class:`~tether.exporter.ExporterObserver` counts sessions, hook runs and health checks
(the callbacks only bump counters; nothing runs in the call path). A small asyncio HTTP
responder serves ``GET /metrics`` (any path, in fact) as Prometheus text from the exporter's
own registry. prometheus-client is imported only when ``metrics_listen`` is set (the
``metrics`` extra).

Every metric is listed in docs/dashboard.md ("Exporter metrics").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from tether.errors import ConfigError

from ._observe import ExporterObserver

if TYPE_CHECKING:
    from tether.wire import CallHandler

    from ._health import HealthResult
    from ._hooks import HookResult
    from ._session import Session

__all__ = ["ExporterMetrics"]

log = logging.getLogger("tether.exporter.metrics")

_HOOK_BUCKETS = (0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600)
_CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1, 5, 30, 120)
_REQUEST_LIMIT = 8192  # bytes of request head read before answering


class ExporterMetrics(ExporterObserver):
    """The exporter's metrics registry; observe an exporter with
    ``exporter.observers.append(metrics)``, serve them with :meth:`listen`.

    Args:
        exporter: the exporter's name (the ``exporter`` label of every metric).

    Raises:
        ConfigError: prometheus-client is not installed.
    """

    def __init__(self, exporter: str) -> None:
        try:
            import prometheus_client as prom
        except ImportError as exc:
            raise ConfigError(
                "metrics_listen needs prometheus-client: pip install 'tether[metrics]'"
            ) from exc
        self._prom = prom
        self.registry = prom.CollectorRegistry()
        r = self.registry
        labels = ["exporter"]
        self._name = exporter
        self.sessions_open = prom.Gauge(
            "tether_exporter_sessions_open", "Sessions open now.", labels, registry=r
        )
        self.sessions = prom.Counter(
            "tether_exporter_sessions", "Sessions opened.", labels, registry=r
        )
        self.hook_runs = prom.Counter(
            "tether_exporter_hook_runs",
            "Hook runs by hook and outcome (ok, failed, timeout).",
            [*labels, "hook", "outcome"],
            registry=r,
        )
        self.hook_seconds = prom.Histogram(
            "tether_exporter_hook_duration_seconds",
            "How long hooks ran.",
            [*labels, "hook"],
            buckets=_HOOK_BUCKETS,
            registry=r,
        )
        self.health_checks = prom.Counter(
            "tether_exporter_health_checks",
            "Health checks by outcome (ok, failed).",
            [*labels, "outcome"],
            registry=r,
        )
        self.healthy = prom.Gauge(
            "tether_exporter_healthy",
            "1 when the last health check passed, 0 when it failed (absent before one ran).",
            labels,
            registry=r,
        )
        self.calls = prom.Counter(
            "tether_exporter_calls",
            "Calls by method and error (the exception's type, 'none' when it succeeded).",
            [*labels, "method", "error"],
            registry=r,
        )
        self.call_seconds = prom.Histogram(
            "tether_exporter_call_duration_seconds",
            "Call latency in the exporter, from dispatch to the last result or item.",
            [*labels, "method"],
            buckets=_CALL_BUCKETS,
            registry=r,
        )
        self.stream_items = prom.Counter(
            "tether_exporter_stream_items",
            "Items sent by streaming calls.",
            [*labels, "method"],
            registry=r,
        )
        self.sessions_open.labels(exporter).set(0)
        self._hook_started: dict[tuple[str, str], float] = {}
        self._server: asyncio.AbstractServer | None = None

    # -- observer -----------------------------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        self.sessions_open.labels(self._name).inc()
        self.sessions.labels(self._name).inc()
        # The seam for calls: this session's connections attach to the counting handler.
        session.handler = _CountingHandler(session.handler, self)  # type: ignore[assignment]

    def call_done(self, method: str, started: float, error: str) -> None:
        """One call ended (``error``: its exception's type name, or ``none``)."""
        self.calls.labels(self._name, method, error).inc()
        self.call_seconds.labels(self._name, method).observe(time.perf_counter() - started)

    def session_closed(self, session: Session) -> None:
        self.sessions_open.labels(self._name).dec()

    def hook_started(self, session: Session, hook: str) -> None:
        self._hook_started[(session.id, hook)] = asyncio.get_running_loop().time()

    def hook_finished(self, session: Session, hook: str, result: HookResult) -> None:
        outcome = "ok" if result.ok else ("timeout" if result.status is None else "failed")
        self.hook_runs.labels(self._name, hook, outcome).inc()
        started = self._hook_started.pop((session.id, hook), None)
        if started is not None:
            elapsed = asyncio.get_running_loop().time() - started
            self.hook_seconds.labels(self._name, hook).observe(elapsed)

    def health_checked(self, result: HealthResult) -> None:
        self.health_checks.labels(self._name, "ok" if result.ok else "failed").inc()
        self.healthy.labels(self._name).set(1 if result.ok else 0)

    # -- serving ------------------------------------------------------------------------------

    def render(self) -> bytes:
        """The metrics as Prometheus text."""
        return bytes(self._prom.generate_latest(self.registry))

    async def listen(self, address: str) -> str:
        """Serve the metrics over HTTP at ``HOST:PORT`` (port 0: any free one).

        Returns:
            The URL scraped (``http://HOST:PORT/metrics``, with the real port).

        Raises:
            ConfigError: the address cannot be bound (in use, no such host...).
        """
        host, _, port = address.rpartition(":")
        host = host.strip("[]")
        try:
            self._server = await asyncio.start_server(self._answer, host, int(port))
        except OSError as exc:
            raise ConfigError(
                f"metrics_listen {address}: cannot listen there: {exc.strerror or exc}"
            ) from exc
        real = self._server.sockets[0].getsockname()[1]
        url = f"http://{'[' + host + ']' if ':' in host else host}:{real}/metrics"
        log.info("exporter %s: metrics at %s", self._name, url)
        return url

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
            if len(head) > _REQUEST_LIMIT or not head.startswith((b"GET ", b"HEAD ")):
                status, body = b"405 Method Not Allowed", b"GET /metrics\n"
            else:
                status, body = b"200 OK", self.render()
            content = b"text/plain; version=0.0.4; charset=utf-8"
            writer.write(
                b"HTTP/1.1 "
                + status
                + b"\r\nContent-Type: "
                + content
                + b"\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + (b"" if head.startswith(b"HEAD ") else body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def aclose(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None


class _CountingHandler:
    """A ``tether.wire.CallHandler`` around the session's own: counts and times each call
    (installed only when metrics are on: nothing is added to the call path otherwise)."""

    __slots__ = ("_inner", "_metrics")

    def __init__(self, inner: CallHandler, metrics: ExporterMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    def call(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> Awaitable[Any] | AsyncIterator[Any]:
        started = time.perf_counter()
        try:
            answer = self._inner.call(node, method, args, kwargs)
        except Exception as exc:
            self._metrics.call_done(method, started, type(exc).__name__)
            raise
        if hasattr(answer, "__anext__"):
            return self._items(answer, method, started)  # type: ignore[arg-type]
        return self._result(answer, method, started)

    async def _result(self, answer: Awaitable[Any], method: str, started: float) -> Any:
        error = "cancelled"
        try:
            value = await answer
            error = "none"
            return value
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            self._metrics.call_done(method, started, error)

    async def _items(
        self, answer: AsyncIterator[Any], method: str, started: float
    ) -> AsyncIterator[Any]:
        error = "cancelled"
        items = self._metrics.stream_items.labels(self._metrics._name, method)
        try:
            async for item in answer:
                items.inc()
                yield item
            error = "none"
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            self._metrics.call_done(method, started, error)

    def open_stream(
        self, node: str, method: str, args: list[Any], kwargs: dict[str, Any]
    ) -> AbstractAsyncContextManager[Any]:
        started = time.perf_counter()
        try:
            opened = self._inner.open_stream(node, method, args, kwargs)
        except Exception as exc:
            self._metrics.call_done(method, started, type(exc).__name__)
            raise
        self._metrics.call_done(method, started, "none")
        return opened

    def wire_error(self, method: str, exc: Exception) -> Any:
        return self._inner.wire_error(method, exc)
