"""A server connection's liveness: the handshake deadline, keepalive, and the PING-flood limit.

``ServerProtocol`` mixes in :class:`LivenessServing`. Keepalive is one timer per connection,
never touched on the per-frame path: the protocol only stamps ``last_received`` as bytes
arrive; the timer works out from it whether to re-arm, send a PING, or give up.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ._events import Ping
from ._state import ConnState

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["MAX_PINGS_PER_SECOND", "LivenessServing"]

log = logging.getLogger("tether.wire.server")

#: PINGs a client may send in a second (its keepalive sends one per silent third of it). A
#: flood of them costs no memory but the loop's time, every other client's (CVE-2019-9512):
#: past this the peer gets ``GOAWAY ping_flood`` and is dropped.
MAX_PINGS_PER_SECOND = 100
_PING_PAYLOAD = b"tether\0\0"


class LivenessServing:
    """Liveness for :class:`~tether.wire.ServerProtocol` (a mixin)."""

    conn: Connection
    last_received: float  # stamped by the protocol as bytes arrive
    _transport: asyncio.Transport | None
    _loop: asyncio.AbstractEventLoop | None

    if TYPE_CHECKING:

        @property
        def peer(self) -> str: ...

        def _write(self, event: Any) -> None: ...

        def _abort(self, code: str, message: str) -> None: ...

        def close(self, code: str = "normal", message: str = "") -> None: ...

    def _init_liveness(
        self,
        keepalive: float | None,
        keepalive_timeout: float | None,
        handshake_timeout: float | None,
    ) -> None:
        self._keepalive = keepalive
        self._keepalive_timeout = keepalive_timeout if keepalive_timeout else keepalive
        self._keepalive_timer: asyncio.TimerHandle | None = None
        self._handshake_timeout = handshake_timeout
        self._handshake_timer: asyncio.TimerHandle | None = None
        #: Loop time of the PING (or the missed Hello) we are waiting on an answer to.
        self._probe_at: float | None = None
        #: PINGs counted since ``_pings_since`` (loop time), for MAX_PINGS_PER_SECOND.
        self._pings = 0
        self._pings_since = 0.0
        #: set when the peer was dropped for a flood (the listener then refuses its address)
        self.flooded = False

    def _arm_liveness(self) -> None:
        """At the accept (``last_received`` is its time): start the deadline and keepalive."""
        loop = self._loop
        assert loop is not None
        now = self.last_received
        if self._keepalive is not None:
            self._keepalive_timer = loop.call_at(now + self._keepalive, self._keepalive_check)
        if self._handshake_timeout is not None:
            self._handshake_timer = loop.call_at(
                now + self._handshake_timeout, self._handshake_expired
            )

    def _disarm_liveness(self) -> None:
        for timer in (self._keepalive_timer, self._handshake_timer):
            if timer is not None:
                timer.cancel()
        self._keepalive_timer = self._handshake_timer = None

    def _handshake_expired(self) -> None:
        self._handshake_timer = None
        if self.conn.state is ConnState.START:
            log.warning("no hello from %s within %g s: closing", self.peer, self._handshake_timeout)
            self._abort("handshake_timeout", "no hello in time")

    def _keepalive_check(self) -> None:
        """Timer callback: re-arm while the client talks, PING when it is silent, then give up."""
        assert self._keepalive is not None and self._keepalive_timeout is not None
        loop = self._loop
        assert loop is not None
        now = loop.time()
        if self._probe_at is not None and self.last_received < self._probe_at:
            # Waiting on an answer since _probe_at: nothing at all has arrived since then.
            deadline = self._probe_at + self._keepalive_timeout
            if now >= deadline:
                silent = now - self.last_received
                log.warning("no frame from %s for %.1f s: closing", self.peer, silent)
                self._keepalive_timer = None
                self.close("keepalive_timeout", f"no frame from the client for {silent:.1f} s")
                return
            # Look again within one interval: an answer restarts the interval from its arrival.
            deadline = min(deadline, now + self._keepalive)
        else:
            self._probe_at = None
            deadline = self.last_received + self._keepalive
            if now >= deadline:
                state = self.conn.state
                if state is ConnState.HELLO_RECEIVED:
                    deadline = now + self._keepalive  # our resolver is busy, not the client
                else:
                    self._probe_at = now
                    deadline = now + min(self._keepalive, self._keepalive_timeout)
                    if state is ConnState.OPEN or state is ConnState.CLOSING:
                        self._write(Ping(_PING_PAYLOAD))
                    # In START the client owes us its Hello; we cannot PING before it.
        self._keepalive_timer = loop.call_at(deadline, self._keepalive_check)

    def _ping_flood(self) -> bool:
        """Count a PING; past MAX_PINGS_PER_SECOND drop the peer and return True."""
        now = self.last_received  # this read's time: a batch of PINGs counts at once
        if now - self._pings_since >= 1.0:
            self._pings_since, self._pings = now, 0
        self._pings += 1
        if self._pings <= MAX_PINGS_PER_SECOND:
            return False
        log.warning("%s sends more than %d PINGs a second: dropping it", self.peer, self._pings - 1)
        self.flooded = True
        self._abort("ping_flood", f"more than {MAX_PINGS_PER_SECOND} PINGs a second")
        if self._transport is not None:
            # At once: a graceful TLS close would read (and decrypt) the flood until the
            # peer's close_notify, which it need never send.
            self._transport.abort()
        return True
