"""``Session``: one client's (or one lease's) fresh driver tree and the connections serving it.

A session is created started (``DriverHost.start``) and lives until :meth:`Session.close`.
Sessions opened for a direct client are *connection-owned*: when their last connection goes
away (closed, killed, cut off and detected by keepalive) a grace timer starts; a connection
that attaches again within the grace period (a client reconnecting with its session id)
cancels it, otherwise the session closes. Lease sessions (opened by the controller) close only
when told to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from tether.driver import CallDispatcher, DriverHost
from tether.wire import ServerProtocol

__all__ = ["Session"]

log = logging.getLogger("tether.exporter.session")


class Session:
    """A started driver tree plus the connections attached to it (a ``ServerSession``).

    Attributes:
        id: the session id clients present to re-attach (unguessable).
        lease_id: the controller's lease this session serves, if any.
        host: the running :class:`~tether.driver.DriverHost`.
        protocols: connections currently attached.
        closed: set once the session's drivers were stopped.
    """

    def __init__(
        self,
        session_id: str,
        host: DriverHost,
        *,
        lease_id: str | None,
        grace: float | None,
        on_idle: Callable[[Session], Coroutine[Any, Any, Any]],
    ) -> None:
        self.id = session_id
        self.lease_id = lease_id
        self.host = host
        self.handler = CallDispatcher(host)
        self.protocols: set[ServerProtocol] = set()
        self.closing = False
        self.held = False
        self.ending: asyncio.Future[None] | None = None
        self.closed = asyncio.Event()
        self._grace = grace
        self._on_idle = on_idle
        self._timer: asyncio.TimerHandle | None = None
        self._idle_task: asyncio.Task[Any] | None = None

    @property
    def owned_by_connections(self) -> bool:
        """True when the session ends (after the grace period) once no connection is left."""
        return self._grace is not None

    def attach(self, protocol: ServerProtocol) -> None:
        self.protocols.add(protocol)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def detach(self, protocol: ServerProtocol) -> None:
        self.protocols.discard(protocol)
        if not self.protocols:
            self.arm_grace_timer()

    def arm_grace_timer(self) -> None:
        """Start counting down to closing, if the session is connection-owned and idle."""
        if self._grace is None or self.closing or self.held or self.protocols or self._timer:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._grace, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self.protocols or self.closing or self.held:
            return
        log.info("session %s: no connection for %g s, closing it", self.id, self._grace)
        self._idle_task = asyncio.get_running_loop().create_task(self._on_idle(self))

    async def close(self) -> None:
        """Close every connection, then stop the drivers (``prepare_stop``, ``stop``)."""
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for protocol in list(self.protocols):
            protocol.close("session_closed", "the session ended")
        self.protocols.clear()
        await self.host.stop()
        self.closed.set()

    def __repr__(self) -> str:
        lease = f" lease={self.lease_id}" if self.lease_id else ""
        return f"<Session {self.id}{lease} connections={len(self.protocols)}>"
