"""The overview page's live stream: just the rows that changed, in the event itself.

Theory of operation. Each open overview keeps one server-sent-events stream (``/events``).
The stream holds a :class:`~._lab_watch.LabWatch`, which gathers the lease ids and exporter
names the controller reports changed (the change notifications that wake the API's
long-polls, so with PostgreSQL another replica's grant arrives too). When something gathered,
the stream takes it, reads only those leases and exporters plus the lab's counts (a few
queries, on a reader thread), renders their rows with the page's own templates (``_rows.html``,
with the page's identity and CSRF field) and sends them as one ``rows`` event. The page swaps
those rows in place: nothing is fetched back, and the rest of the page is left alone.

The queue is the one table sent whole, and only when the requests it shows changed: a grant
from the queue moves every position below it. When the watch cannot say what changed (the
change feed was lost, an admin changed identities, too many names gathered) the stream sends
``change`` and the page fetches its whole body once, as it also does when its stream
(re)connects.

After each event the stream waits :data:`MIN_INTERVAL` before the next, so a burst of changes
makes one event and an open page costs at most ten small reads a second however busy the lab.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from tether.errors import ControllerError

from ._controller import Controller
from ._lab_watch import LabChange
from ._records import ExporterStatus, LeaseState

__all__ = ["MIN_INTERVAL", "OverviewFeed", "overview_stream"]

#: Seconds between two events of one stream (changes meanwhile gather into the next).
MIN_INTERVAL = 0.1
_KEEPALIVE_SECONDS = 15.0
_OUT_OF_POOL = {ExporterStatus.MAINTENANCE, ExporterStatus.UNHEALTHY, ExporterStatus.OFFLINE}


class OverviewFeed:
    """Renders what changed for one open overview.

    Args:
        controller: whose lab it shows.
        rows: the ``_rows.html`` template module, made with the page's ``me``.
        limit: how many exporters and queued requests the page shows (None: all).
    """

    def __init__(self, controller: Controller, rows: Any, limit: int | None) -> None:
        self.controller = controller
        self.rows = rows
        self.limit = limit
        # The requests the page's queue shows, in order, and why each waits (None: unknown).
        self._shown_queue: list[tuple[str, str | None]] | None = None
        # The exporters out of the pool as of the last queue read (None: unknown).
        self._down: set[str] | None = None

    def forget(self) -> None:
        """The page is fetching its whole body: what it shows is no longer known."""
        self._shown_queue = None
        self._down = None

    def render(self, change: LabChange) -> dict[str, Any]:
        """The ``rows`` event for ``change`` (blocking: run it on a reader thread).

        Returns:
            ``summary`` (the counts line), ``exporters`` (name to row), ``leases`` (each
            ``id``, ``seq``, the ``section`` it belongs in now, ``live``, ``recent`` or None,
            and its ``row``), ``queue`` (the whole queue table, or None when the requests it
            shows did not change) and ``queue_total``.
        """
        views = self.controller.store.views
        counts = views.counts()
        changed = views.exporters_named(change.exporters)
        down = self._down
        # Only an exporter leaving or rejoining the pool changes why requests wait.
        pool_moved = down is None or any(
            (e.status in _OUT_OF_POOL) != (e.name in down) for e in changed
        )
        queue_total = counts.leases[LeaseState.PENDING.value]
        rows: list[dict[str, Any]] = []
        queue_touched = False
        for lease in views.leases_by_id(change.leases):
            if lease.state is LeaseState.PENDING:
                queue_touched = True
                continue
            if lease.state is LeaseState.READY:
                section, row = "live", self.rows.live_row(lease)
            else:
                section, row = "recent", self.rows.recent_row(lease)
            rows.append({"id": lease.id, "seq": lease.seq, "section": section, "row": str(row)})
        queue_html: str | None = None
        shown = self._shown_queue
        if (
            queue_touched
            or shown is None
            or not change.leases.isdisjoint(id for id, _ in shown)
            or (pool_moved and queue_total)
        ):
            self._down = set(views.out_of_pool())
            # The queue's own total, for the summary too: counted before it, a request made
            # in between would be a row the summary does not count yet.
            queue, queue_total = views.queue(self.limit)
            now_shown = [(lease.id, lease.waiting) for lease in queue]
            if now_shown != shown or not change.leases.isdisjoint(id for id, _ in now_shown):
                queue_html = str(self.rows.queue_section(queue, queue_total))
            self._shown_queue = now_shown
        return {
            "summary": str(
                self.rows.summary(
                    sum(counts.exporters.values()),
                    [(s, n) for s, n in counts.exporters.items() if n],
                    queue_total,
                    counts.leases[LeaseState.READY.value],
                )
            ),
            "exporters": {e.name: str(self.rows.exporter_row(e)) for e in changed},
            "leases": rows,
            "queue": queue_html,
            "queue_total": queue_total,
        }


async def overview_stream(controller: Controller, feed: OverviewFeed) -> AsyncIterator[bytes]:
    """The ``/events`` stream of one overview page: ``rows`` and ``change`` events, and a
    comment now and then that keeps proxies from closing an idle stream."""
    with controller.watch_lab() as watch:
        yield b"retry: 2000\n\n"
        while not controller.closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(watch.changed.wait(), _KEEPALIVE_SECONDS)
            if controller.closing:
                break
            if not watch.changed.is_set():
                yield b": keepalive\n\n"
                continue
            change = watch.take()
            event = b"event: change\ndata: {}\n\n"
            if not change.everything:
                with contextlib.suppress(ControllerError):  # then the page reads it all
                    update = await controller.run_read(feed.render, change)
                    event = b"event: rows\ndata: " + json.dumps(update).encode() + b"\n\n"
            if event.startswith(b"event: change"):
                feed.forget()
            yield event
            await asyncio.sleep(MIN_INTERVAL)
