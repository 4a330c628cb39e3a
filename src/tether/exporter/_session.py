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
import enum
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from tether.driver import CallDispatcher, DriverHost
from tether.errors import LifecycleError
from tether.wire import ServerProtocol

__all__ = ["SESSION_TRANSITIONS", "Session", "SessionEvent", "SessionKind", "SessionState"]

log = logging.getLogger("tether.exporter.session")


class SessionKind(enum.Enum):
    """Who owns a session: its connections (a direct client) or a controller lease."""

    DIRECT = "direct"
    LEASE = "lease"


class SessionState(enum.Enum):
    OPENING = "OPENING"  # drivers started, ``before_lease`` running (its clients may attach)
    OPEN = "OPEN"  # serving
    IDLE = "IDLE"  # (direct) no connection left; closes when the grace period ends
    ENDING = "ENDING"  # ``after_lease`` running, then connections closed, drivers stopping
    CLOSED = "CLOSED"  # drivers stopped


class SessionEvent(enum.Enum):
    OPENED = "opened"  # before_lease finished (or there is none)
    ATTACH = "attach a connection"
    DETACH_LAST = "detach the last connection"
    END = "end"
    STOPPED = "drivers stopped"


_K, _S, _E = SessionKind, SessionState, SessionEvent

#: (kind, state, event) -> next state: every legal move of a session.
SESSION_TRANSITIONS: dict[tuple[SessionKind, SessionState, SessionEvent], SessionState] = {}
for _kind in SessionKind:
    SESSION_TRANSITIONS.update(
        {
            (_kind, _S.OPENING, _E.OPENED): _S.OPEN,
            (_kind, _S.OPENING, _E.ATTACH): _S.OPENING,
            (_kind, _S.OPENING, _E.DETACH_LAST): _S.OPENING,  # the hook's `dut` came and went
            (_kind, _S.OPEN, _E.ATTACH): _S.OPEN,
            (_kind, _S.ENDING, _E.ATTACH): _S.ENDING,  # after_lease's own connections
            (_kind, _S.ENDING, _E.DETACH_LAST): _S.ENDING,
            (_kind, _S.ENDING, _E.STOPPED): _S.CLOSED,
        }
    )
    for _state in (_S.OPENING, _S.OPEN, _S.IDLE):
        SESSION_TRANSITIONS[(_kind, _state, _E.END)] = _S.ENDING
SESSION_TRANSITIONS[(_K.DIRECT, _S.OPEN, _E.DETACH_LAST)] = _S.IDLE
SESSION_TRANSITIONS[(_K.DIRECT, _S.IDLE, _E.ATTACH)] = _S.OPEN
SESSION_TRANSITIONS[(_K.LEASE, _S.OPEN, _E.DETACH_LAST)] = _S.OPEN  # it waits for its lease


class Session:
    """A started driver tree plus the connections attached to it (a ``ServerSession``).

    Attributes:
        id: the session id clients present to re-attach (unguessable).
        lease_id: the controller's lease this session serves, if any.
        host: the running :class:`~tether.driver.DriverHost`.
        protocols: connections currently attached.
        state: where the session is (:class:`SessionState`, moved by :data:`SESSION_TRANSITIONS`).
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
        self.kind = SessionKind.DIRECT if grace is not None else SessionKind.LEASE
        self.state = SessionState.OPENING
        self.handler = CallDispatcher(host)
        self.protocols: set[ServerProtocol] = set()
        self.ending: asyncio.Future[None] | None = None
        self.closed = asyncio.Event()
        #: called once the drivers stopped.
        self.closed_callbacks: list[Callable[[], object]] = []
        self._grace = grace
        self._on_idle = on_idle
        self._timer: asyncio.TimerHandle | None = None
        self._idle_task: asyncio.Task[Any] | None = None

    def _move(self, event: SessionEvent) -> None:
        new = SESSION_TRANSITIONS.get((self.kind, self.state, event))
        if new is None:
            raise LifecycleError(
                f"session {self.id} ({self.kind.value}): cannot {event.value} in state "
                f"{self.state.name}"
            )
        self.state = new

    @property
    def closing(self) -> bool:
        """True once the session is ending (or ended)."""
        return self.state is SessionState.ENDING or self.state is SessionState.CLOSED

    @property
    def owned_by_connections(self) -> bool:
        """True when the session ends (after the grace period) once no connection is left."""
        return self.kind is SessionKind.DIRECT

    def opened(self) -> None:
        """``before_lease`` is done: serve; a direct session with no connection goes idle."""
        self._move(SessionEvent.OPENED)
        if not self.protocols and self.kind is SessionKind.DIRECT:
            self._move(SessionEvent.DETACH_LAST)
            self._arm_grace_timer()

    def attach(self, protocol: ServerProtocol) -> None:
        """A connection joins.

        Raises:
            LifecycleError: the session is closed.
        """
        self._move(SessionEvent.ATTACH)
        self.protocols.add(protocol)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def detach(self, protocol: ServerProtocol) -> None:
        if protocol not in self.protocols:
            return
        self.protocols.discard(protocol)
        if not self.protocols and self.state is not SessionState.CLOSED:
            self._move(SessionEvent.DETACH_LAST)
            if self.state is SessionState.IDLE:
                self._arm_grace_timer()

    def _arm_grace_timer(self) -> None:
        """Start counting down to closing (an idle direct session)."""
        if self._grace is None or self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._grace, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self.state is not SessionState.IDLE:
            return
        log.info("session %s: no connection for %g s, closing it", self.id, self._grace)
        self._idle_task = asyncio.get_running_loop().create_task(self._on_idle(self))

    def end(self) -> None:
        """The session starts ending (``after_lease`` runs next); idempotent."""
        if not self.closing:
            self._move(SessionEvent.END)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def close(self, reason: str = "the session ended") -> None:
        """Close every connection (telling its client ``reason``), then stop the drivers
        (``prepare_stop``, ``stop``)."""
        self.end()
        for protocol in list(self.protocols):
            protocol.close("session_closed", reason)
        self.protocols.clear()
        try:
            await self.host.stop()
        finally:
            if self.state is not SessionState.CLOSED:
                self._move(SessionEvent.STOPPED)
                for callback in self.closed_callbacks:
                    callback()
            self.closed.set()

    def __repr__(self) -> str:
        lease = f" lease={self.lease_id}" if self.lease_id else ""
        return f"<Session {self.id}{lease} {self.state.name} connections={len(self.protocols)}>"
