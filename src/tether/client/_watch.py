"""Watching a lease from the client side, on a daemon thread each.

* :class:`HookWatcher`: while the client connects, the exporter's ``before_lease`` hook may
  run; its output (the end of it, as the exporter reports it to the controller) is shown as
  it comes, by long-polling the lease with ``hooks=VERSION``. A lease the hook ended shows
  why.
* :class:`ExpiryWatcher`: ``tether shell``'s lease: a warning some minutes before it expires
  (re-read first: an extension moves it), and "the lease expired at T" once it did (also
  told to the session, so ``dut`` hears it without a relay dial).

Both swallow every error (the main thread reports its own) and never block the caller.
"""

from __future__ import annotations

import datetime
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from tether.errors import LeaseEnded, TetherError

from ._lease import ClientSettings, Lease, LeaseClient
from ._lease_api import lease_ended

__all__ = ["ExpiryWatcher", "HookWatcher", "hook_printer", "new_output"]

_POLL = 5.0


def new_output(shown: str, output: str) -> str:
    """What of ``output`` (a tail of a growing text) comes after ``shown`` (an older tail)."""
    if not shown:
        return output
    for size in range(min(len(shown), len(output)), 0, -1):
        if output.startswith(shown[-size:]):
            return output[size:]
    return output


def hook_printer(stream: Any = None) -> Callable[[dict[str, Any], str], None]:
    """An ``on_hook`` callback writing each new piece of hook output to ``stream`` (stderr)."""

    def show(run: dict[str, Any], text: str) -> None:
        out = stream or sys.stderr
        hook = run.get("hook", "hook")
        for line in text.splitlines():
            out.write(f"[{hook}] {line}\n")
        if run.get("state") in ("ok", "failed"):
            out.write(f"[{hook}] {run['state']}\n")
        out.flush()

    return show


class HookWatcher:
    """Shows a lease's hook output while the caller connects; :meth:`stop` when connected."""

    def __init__(
        self,
        settings: ClientSettings,
        lease: Lease,
        on_hook: Callable[[dict[str, Any], str], None],
    ) -> None:
        self._settings = settings
        self._lease = lease
        self._on_hook = on_hook
        self._stopped = threading.Event()
        self._shown: dict[str, str] = {}
        self._done: set[tuple[str, int]] = set()
        self._thread = threading.Thread(target=self._run, name="tether-hooks", daemon=True)
        self._thread.start()

    def _show(self, lease: Lease) -> None:
        for run in lease.raw.get("hooks") or []:
            if run.get("hook") != "before_lease":
                continue  # after_lease runs once the client is gone
            hook = str(run.get("hook"))
            output = str(run.get("output") or "")
            key = (hook, int(run.get("updates", 0)))
            if key in self._done:
                continue
            self._done.add(key)
            text = new_output(self._shown.get(hook, ""), output)
            self._shown[hook] = output
            if text or run.get("state") != "running":
                self._on_hook(run, text)

    def _run(self) -> None:
        try:
            with LeaseClient(self._settings) as api:
                lease = self._lease
                self._show(lease)
                while not self._stopped.is_set() and lease.state == "ready":
                    version = int(lease.raw.get("hooks_version") or 0)
                    lease = api.get(lease.id, wait=_POLL, state="ready", hooks=version)
                    self._show(lease)
        except TetherError:
            pass

    def stop(self) -> None:
        """Stop watching (the thread ends after its current long-poll; nobody waits)."""
        self._stopped.set()


def _when(iso: str | None) -> float | None:
    if not iso:
        return None
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class ExpiryWatcher:
    """Warns ``warn_before`` seconds before a lease ends and says when it ended.

    Args:
        settings: the client's settings (a connection of its own).
        lease: the lease, as granted.
        warn_before: seconds before ``ends_at`` to warn (0: no warning).
        say: where the messages go (one line each).
        on_end: called with the lease's end as an error (``LeaseExpired``...) once it ended,
            e.g. a session's ``give_up``, so later calls fail at once without dialling.
    """

    def __init__(
        self,
        settings: ClientSettings,
        lease: Lease,
        *,
        warn_before: float,
        say: Callable[[str], None],
        on_end: Callable[[LeaseEnded], object] | None = None,
    ) -> None:
        self._settings = settings
        self._lease = lease
        self._warn_before = warn_before
        self._say = say
        self._on_end = on_end
        self._stopped = threading.Event()
        #: set once the lease is no longer ready; ``ended`` is the message said then.
        self.gone = threading.Event()
        self.ended: str | None = None
        self._thread = threading.Thread(target=self._run, name="tether-expiry", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        warned_for: float | None = None
        try:
            with LeaseClient(self._settings) as api:
                lease = self._lease
                while not self._stopped.is_set():
                    if lease.state != "ready":
                        self._ended(lease)
                        return
                    ends = _when(lease.ends_at)
                    now = time.time()
                    due = ends is not None and self._warn_before > 0 and warned_for != ends
                    if due and ends is not None and now >= ends - self._warn_before:
                        warned_for = ends
                        minutes = max(0, round((ends - now) / 60))
                        self._say(
                            f"lease {lease.id} expires at {lease.ends_at} (in about "
                            f"{minutes} min); `tether lease extend {lease.id} 30m` keeps it"
                        )
                    wait = 30.0
                    if ends is not None and warned_for != ends and self._warn_before > 0:
                        wait = min(wait, max(0.1, ends - self._warn_before - now))
                    lease = api.get(lease.id, wait=wait, state="ready")
        except TetherError:
            pass

    def _ended(self, lease: Lease) -> None:
        error = lease_ended(lease)
        assert error is not None  # called once the lease is neither pending nor ready
        self.ended = str(error)
        if self._on_end is not None:
            self._on_end(error)
        self.gone.set()
        if not self._stopped.is_set():
            self._say(self.ended)

    def stop(self) -> None:
        """Stop watching (nobody waits for the thread)."""
        self._stopped.set()
