"""The exporter's health check (the config's ``health:`` section).

Either a shell ``command`` (run like a hook: ``/bin/sh -c`` in its own process group, killed
whole at ``timeout``, only the end of its output kept), or ``transition: STATE`` of ``node``
(a BootStrategy): a fresh driver tree is started, as for a lease, the node's
``transition(STATE)`` is called under ``timeout``, and the tree is stopped again.

The controller agent runs it when it registers, every ``interval`` seconds while the exporter
is idle, and after every lease (after ``after_lease``); it reports each outcome to the
controller, which keeps a failing exporter ``unhealthy`` (never granted) until one passes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import Any, cast

from tether.driver import DriverHost

from ._config import ExporterConfig, HealthConfig, build_tree
from ._hooks import run_hook

__all__ = ["HealthResult", "run_health_check"]

log = logging.getLogger("tether.exporter.health")

#: How much of a failing check's output is reported to the controller (its end).
REPORT_CHARS = 4000


@dataclass(frozen=True, slots=True)
class HealthResult:
    """A health check's outcome: ``output`` is the end of what it printed (or why it failed)."""

    ok: bool
    output: str


async def run_health_check(config: ExporterConfig) -> HealthResult:
    """Run ``config.health`` once (never raises: a failure is a result)."""
    health = config.health
    assert health is not None
    if health.command is not None:
        result = await run_hook("health", health.command, env={}, time_limit=health.timeout)
        if result.ok:
            return HealthResult(True, _tail(result.output))
        what = (
            f"timed out after {health.timeout:g} s"
            if result.status is None
            else f"exited with status {result.status}"
        )
        return HealthResult(False, _tail(f"health command {what}\n{result.output}"))
    return await _transition(config, health)


async def _transition(config: ExporterConfig, health: HealthConfig) -> HealthResult:
    what = f"health check: {health.node}.transition({health.transition!r})"
    try:
        root, uses = build_tree(config)
        host = DriverHost(root, config.name, uses=uses)
    except Exception as exc:
        return HealthResult(False, _tail(f"{what}: the driver tree could not be built: {exc}"))
    try:
        async with asyncio.timeout(health.timeout):
            await host.start()
            driver = next(node.driver for node in host.root_node.walk() if node.path == health.node)
            value = cast(Any, driver).transition(health.transition)
            if inspect.isawaitable(value):
                await value
    except TimeoutError:
        return HealthResult(False, f"{what} timed out after {health.timeout:g} s")
    except Exception as exc:
        return HealthResult(False, _tail(f"{what} failed: {type(exc).__name__}: {exc}"))
    finally:
        await host.stop()
    return HealthResult(True, f"{what}: done")


def _tail(text: str) -> str:
    return text if len(text) <= REPORT_CHARS else "[...]\n" + text[-REPORT_CHARS:]
