"""What the exporter tells observers (the controller agent, the metrics): a small seam.

An :class:`ExporterObserver` gets plain, synchronous callbacks from the exporter's loop; each
must return at once (queue work, bump a counter), never block or raise. Nothing is computed
for them in the hot path beyond the call itself.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._health import HealthResult
    from ._hooks import HookResult
    from ._session import Session

__all__ = ["ExporterObserver", "Observers"]

log = logging.getLogger("tether.exporter.observe")


class ExporterObserver:
    """Override the callbacks you need; the default ones do nothing."""

    def session_opened(self, session: Session) -> None:
        """A session (a fresh driver tree) opened."""

    def session_closed(self, session: Session) -> None:
        """A session ended (after ``after_lease``)."""

    def hook_started(self, session: Session, hook: str) -> None:
        """``before_lease`` or ``after_lease`` started for ``session``."""

    def hook_output(self, session: Session, hook: str, output: str) -> None:
        """The end of a running hook's output, at most once a second while it changes."""

    def hook_finished(self, session: Session, hook: str, result: HookResult) -> None:
        """A hook ended (``result.status`` is ``None`` when it timed out)."""

    def health_checked(self, result: HealthResult) -> None:
        """A health check ended."""


class Observers(list[ExporterObserver]):
    """The exporter's observers; :meth:`emit` calls one callback on each, and a callback that
    raises is logged, not passed on."""

    def emit(self, callback: str, *args: object) -> None:
        for observer in self:
            try:
                getattr(observer, callback)(*args)
            except Exception:
                log.exception("observer %r: %s failed", observer, callback)
