"""The agent's hook reports: each lease's hook output goes to the controller as it runs.

An :class:`~tether.exporter.ExporterObserver` keeps the newest report of each (lease, hook)
(a hook that prints fast is coalesced to one report a second); one task sends them in order,
``POST /v1/exporter/leases/ID/hooks``. A report that cannot be sent is logged and dropped: the
hook's output is in the exporter's log anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from tether.errors import ConnectFailed, ControllerError

from ._hooks import PROGRESS_CHARS, HookResult
from ._observe import ExporterObserver
from ._session import Session

__all__ = ["HookReports"]

log = logging.getLogger("tether.exporter.agent")

Send = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


class HookReports(ExporterObserver):
    """Queues hook reports of lease sessions; :meth:`send_forever` delivers them."""

    def __init__(self) -> None:
        self._pending: dict[tuple[str, str], dict[str, Any]] = {}
        self._ready = asyncio.Event()

    def _put(self, session: Session, hook: str, body: dict[str, Any]) -> None:
        if session.lease_id is None:
            return
        key = (session.lease_id, hook)
        self._pending.pop(key, None)  # the newest replaces it, at the end of the line
        self._pending[key] = {"hook": hook, **body}
        self._ready.set()

    def hook_started(self, session: Session, hook: str) -> None:
        self._put(session, hook, {"state": "running", "output": ""})

    def hook_output(self, session: Session, hook: str, output: str) -> None:
        self._put(session, hook, {"state": "running", "output": output})

    def hook_finished(self, session: Session, hook: str, result: HookResult) -> None:
        output = result.output[-PROGRESS_CHARS:]
        if not result.ok:
            output = f"{result.describe().splitlines()[0]}\n{output}"[-PROGRESS_CHARS:]
        state = "ok" if result.ok else "failed"
        self._put(session, hook, {"state": state, "output": output, "status": result.status})

    async def send_forever(self, send: Send) -> None:
        """Send each report, oldest first, with ``send(method, path, json=...)``."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._pending:
                (lease_id, hook), body = next(iter(self._pending.items()))
                del self._pending[(lease_id, hook)]
                try:
                    await send("POST", f"/v1/exporter/leases/{lease_id}/hooks", body)
                except (ConnectFailed, ControllerError) as exc:
                    log.warning("lease %s: %s output not sent: %s", lease_id, hook, exc)
