"""Why a queued request still waits, when the lab can say: its exporters are out of the pool.

A request waits for one of two reasons: the exporters it can use are leased (it is served in
its turn), or every exporter matching one of its slots is out of the pool (in maintenance,
unhealthy, or offline), so nothing is granted until one comes back. The second is worth
telling its client and the lab's admins; :func:`waiting_reasons` words it, for the lease
object's ``waiting`` field (the API, ``tether queue``, ``tether lease``, the dashboard).

Cost: one query for the exporters out of the pool (usually few), and the label index's cached
candidates per request shape; a queue of 500 identical requests is one evaluation.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, or_, select

from ._scheduler import LabIndex, Slot
from ._selector import Selector, parse_selector
from ._tables import exporters, lab_state

__all__ = ["LabIndexCache", "out_of_pool", "slot_from_json", "waiting_reasons"]

_SHOWN = 3  # exporters named in a reason; the rest are counted


def slot_from_json(data: Mapping[str, Any]) -> Slot:
    """A slot from its JSON (``{"selector": ..., "exporter": ...}``) in a lease's requests."""
    if data.get("exporter"):
        return Slot(exporter=str(data["exporter"]))
    return Slot(selector=parse_selector(str(data.get("selector") or "")))


class LabIndexCache:
    """The label index, rebuilt when ``lab_state.exporters_version`` moves (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: The ``exporters_version`` the index was built at (-1: not yet).
        self.version = -1
        self._index = LabIndex({})

    def get(self, conn: Connection) -> LabIndex:
        """The index as of ``conn``'s view of the database."""
        version = conn.execute(
            select(lab_state.c.exporters_version).where(lab_state.c.id == 1)
        ).scalar_one()
        with self._lock:
            if version != self.version:
                rows = conn.execute(
                    select(exporters.c.name, exporters.c.labels, exporters.c.admin_labels)
                ).all()
                self._index = LabIndex(
                    {row.name: row.labels for row in rows},
                    {row.name: row.admin_labels for row in rows},
                )
                self.version = version
            return self._index


def out_of_pool(conn: Connection, cutoff: float) -> dict[str, str]:
    """Exporter name → why it is out of the pool (``in maintenance (why)``, ``unhealthy
    (first line of the check)``, ``offline``), for every exporter that is."""
    rows = conn.execute(
        select(
            exporters.c.name,
            exporters.c.maintenance,
            exporters.c.unhealthy,
            exporters.c.last_seen,
        ).where(
            or_(
                exporters.c.maintenance.is_not(None),
                exporters.c.unhealthy.is_not(None),
                exporters.c.last_seen.is_(None),
                exporters.c.last_seen < cutoff,
            )
        )
    )
    found: dict[str, str] = {}
    for row in rows:
        # The same order as the exporter's shown status: an admin's word first.
        if row.maintenance is not None:
            found[row.name] = f"in maintenance ({_short(row.maintenance)})"
        elif row.last_seen is None or row.last_seen < cutoff:
            found[row.name] = "offline"
        else:
            found[row.name] = f"unhealthy ({_short(row.unhealthy)})"
    return found


def waiting_reasons(
    index: LabIndex,
    down: Mapping[str, str],
    requests: Iterable[tuple[str, Sequence[Mapping[str, Any]], Sequence[str] | None]],
) -> dict[str, str]:
    """Lease id → why it waits, for the requests that wait on exporters out of the pool.

    Args:
        index: every exporter's labels.
        down: :func:`out_of_pool`'s answer.
        requests: ``(lease id, requests JSON, allowed selectors JSON)`` of pending leases.
    """
    if not down:
        return {}
    by_shape: dict[str, str | None] = {}
    found: dict[str, str] = {}
    for lease_id, wanted, allowed in requests:
        key = repr((wanted, allowed))
        if key not in by_shape:
            by_shape[key] = _reason(index, down, wanted, allowed)
        reason = by_shape[key]
        if reason is not None:
            found[lease_id] = reason
    return found


def _reason(
    index: LabIndex,
    down: Mapping[str, str],
    wanted: Sequence[Mapping[str, Any]],
    allowed: Sequence[str] | None,
) -> str | None:
    limits: tuple[Selector, ...] | None = (
        None if allowed is None else tuple(map(parse_selector, allowed))
    )
    for data in wanted:
        slot = slot_from_json(data)
        matching = sorted(index.candidates(slot, limits))
        if not matching or any(name not in down for name in matching):
            continue
        one = len(matching) == 1
        what = "exporter" if one else "exporters"
        # One slot: "the only matching exporter"; several: say which slot.
        who = f"matching {what}" if len(wanted) == 1 else f"{what} matching {slot}"
        states = {down[name].split(" (")[0] for name in matching}
        if len(states) == 1:
            (state,) = states
            named = [name + down[name][len(state) :] for name in matching[:_SHOWN]]
            head = f"waiting: the only {who} {'is' if one else 'are'} {state}"
        else:
            named = [f"{name} {down[name]}" for name in matching[:_SHOWN]]
            head = f"waiting: the only {who} are out of the pool"
        more = f" and {len(matching) - _SHOWN} more" if len(matching) > _SHOWN else ""
        return f"{head}: {', '.join(named)}{more}"
    return None


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= 80 else line[:77] + "..."
