"""Prometheus metrics of one exporter (``metrics_listen: HOST:PORT`` in its config).

An :class:`~tether.exporter.ExporterObserver` counts sessions, hook runs and health checks
(the callbacks only bump counters). When metrics are on, each session's call handler is
wrapped to count calls and the bytes of byte streams (nothing is added to the call path
otherwise). A small asyncio HTTP
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
    from tether.driver import DriverHost
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
        self._name = exporter
        family = self._family
        self.sessions_open = family(prom.Gauge, "sessions_open", "Sessions open now.")
        self.sessions = family(prom.Counter, "sessions", "Sessions opened.")
        self.hook_runs = family(
            prom.Counter,
            "hook_runs",
            "Hook runs by hook and outcome (ok, failed, timeout).",
            "hook",
            "outcome",
        )
        self.hook_seconds = family(
            prom.Histogram,
            "hook_duration_seconds",
            "How long hooks ran.",
            "hook",
            buckets=_HOOK_BUCKETS,
        )
        self.health_checks = family(
            prom.Counter, "health_checks", "Health checks by outcome (ok, failed).", "outcome"
        )
        self.healthy = family(
            prom.Gauge,
            "healthy",
            "1 when the last health check passed, 0 when it failed (absent before one ran).",
        )
        self.calls = family(
            prom.Counter,
            "calls",
            "Calls by method and error (the exception's type, 'none' when it succeeded).",
            "method",
            "error",
        )
        self.call_seconds = family(
            prom.Histogram,
            "call_duration_seconds",
            "Call latency in the exporter, from dispatch to the last result or item.",
            "method",
            buckets=_CALL_BUCKETS,
        )
        self.stream_items = family(
            prom.Counter, "stream_items", "Items sent by streaming calls.", "method"
        )
        self.stream_bytes = family(
            prom.Counter,
            "stream_bytes",
            "Bytes carried by byte streams, by driver node, method and direction "
            "(in: from the client to the driver; out: from the driver to the client).",
            "node",
            "method",
            "direction",
        )
        self.sessions_open.labels(exporter).set(0)
        self._hook_started: dict[tuple[str, str], float] = {}
        self._server: asyncio.AbstractServer | None = None

    def _family(self, kind: Any, name: str, text: str, *labels: str, **options: Any) -> Any:
        """A metric ``tether_exporter_NAME`` of this registry, labelled ``exporter`` first."""
        return kind(
            f"tether_exporter_{name}",
            text,
            ["exporter", *labels],
            registry=self.registry,
            **options,
        )

    # -- observer -----------------------------------------------------------------------------

    def session_opened(self, session: Session) -> None:
        self.sessions_open.labels(self._name).inc()
        self.sessions.labels(self._name).inc()
        # The seam for calls: this session's connections attach to the counting handler.
        handler = _CountingHandler(session.handler, self, session.host)
        session.handler = handler  # type: ignore[assignment]

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

    __slots__ = ("_host", "_inner", "_metrics")

    def __init__(self, inner: CallHandler, metrics: ExporterMetrics, host: DriverHost) -> None:
        self._inner = inner
        self._metrics = metrics
        self._host = host

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
        # The node's path in the tree ("net", "board.console"), not its uuid: uuids are new
        # every session, and a label per session would grow the registry without bound.
        return self._counted(opened, self._host.lookup(node).node.path or "root", method)

    @contextlib.asynccontextmanager
    async def _counted(
        self, opened: AbstractAsyncContextManager[Any], path: str, method: str
    ) -> AsyncIterator[Any]:
        family = self._metrics.stream_bytes
        name = self._metrics._name
        async with opened as stream:
            yield _CountingStream(
                stream,
                family.labels(name, path, method, "in"),
                family.labels(name, path, method, "out"),
            )

    def wire_error(self, method: str, exc: Exception) -> Any:
        return self._inner.wire_error(method, exc)


class _CountingStream:
    """A driver's byte stream with its bytes counted in both directions; everything else
    (``send_eof``, ``accepts_buffers``...) is the driver's own, as the wire looks it up."""

    def __init__(self, inner: Any, into: Any, out: Any) -> None:
        self._inner = inner
        self._into = into
        self._out = out
        if hasattr(inner, "send_now"):  # the wire's fast path, only where the driver has it
            self.send_now = self._send_now

    async def send(self, data: bytes) -> None:
        await self._inner.send(data)
        self._into.inc(len(data))

    async def receive(self) -> bytes:
        data: bytes = await self._inner.receive()
        if data:
            self._out.inc(len(data))
        return data

    def _send_now(self, chunks: list[Any]) -> bool:
        done: bool = self._inner.send_now(chunks)
        if done:
            self._into.inc(sum(len(chunk) for chunk in chunks))
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
