"""Keepalive for the blocking client (mixed into ``ClientConnection``).

When nothing was received for ``keepalive`` seconds the reader sends a PING; if nothing
arrives for ``2 * keepalive`` more, the connection is declared dead. Between calls an idle
thread does the reading (see :meth:`ClientKeepalive._idle_loop`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

from tether.errors import ConnectionLost, TetherError

from ._events import Event, Ping

__all__ = ["ClientKeepalive"]

#: The idle reader's longest nap (seconds): how late an idle client may answer a PING.
_IDLE_PERIOD_MAX = 1.0


class ClientKeepalive:
    """The keepalive half of ``ClientConnection``."""

    _keepalive: float | None
    _pinged_at: float | None
    _received_at: float
    _error: BaseException | None
    _stopping: threading.Event
    _read_lock: threading.Lock

    if TYPE_CHECKING:

        def _send(self, event: Event) -> None: ...

        def _read_once(self, *, blocking: bool) -> None: ...

        def _hand_off(self) -> None: ...

        def _fail_all(self, error: BaseException) -> None: ...

    def _keepalive_tick(self, *, silent: bool = False) -> None:
        """PING after ``keepalive`` of silence; raise ConnectionLost ``2 * keepalive`` later."""
        if self._keepalive is None:
            return
        now = time.monotonic()
        if self._pinged_at is None:
            if not silent and now - self._received_at < self._keepalive:
                return  # the idle timer ticked, but the peer spoke recently
            self._pinged_at = now
            with contextlib.suppress(TetherError):
                self._send(Ping())
        elif now - self._pinged_at >= 2 * self._keepalive:
            raise ConnectionLost(f"no answer from the peer for {3 * self._keepalive:g} s")

    def _idle_loop(self) -> None:
        """Every ``keepalive / 2`` seconds (at most 1 s), read whatever arrived if no caller is
        reading: answer the server's PINGs, notice a GoAway, and PING a silent server.

        A timer, not a watcher: watching the socket would wake this thread on every reply and
        cost each call a thread switch. The 1 s cap bounds how late an idle client answers a
        server's PING, whatever its own ``keepalive``.
        """
        assert self._keepalive is not None
        period = min(self._keepalive / 2, _IDLE_PERIOD_MAX)
        while not self._stopping.wait(period):
            if self._error is not None:
                return
            if not self._read_lock.acquire(blocking=False):
                continue  # a caller is reading, and answering pings itself
            try:
                self._read_once(blocking=False)
                if self._error is None:
                    self._keepalive_tick()
            except ConnectionLost:
                self._fail_all(ConnectionLost("keepalive: the peer stopped answering"))
            finally:
                self._read_lock.release()
                self._hand_off()
