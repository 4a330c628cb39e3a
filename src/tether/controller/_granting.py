"""The grant pass: who gets which exporter, decided in the lab lock's transaction.

:class:`GrantPass` is the part of :class:`~._store.Store` that every operation able to change
who holds what ends with: load the waiting requests and the grantable exporters, let the pure
:func:`~._scheduler.schedule` decide, write the grants (and end leases, :meth:`_finish`). It
keeps the caches that make a pass over thousands of exporters cheap: the label index (rebuilt
when ``lab_state.exporters_version`` moves) and each waiting request parsed once.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, update

from tether.errors import ControllerError

from . import _audit as audit_log
from ._records import Changes, LeaseRecord, LeaseState, iso
from ._scheduler import LabIndex, Policy, RequestView, Slot, schedule, unsatisfiable_reason
from ._selector import Selector, parse_selector
from ._tables import exporters, lab_state, lease_exporters, leases, policies
from ._waiting import LabIndexCache, out_of_pool, slot_from_json, waiting_reasons

__all__ = ["GrantPass", "slot_json"]


class GrantPass:
    """The grant pass, its caches and the lease loading every operation shares (a base of
    :class:`~._store.Store`, which sets ``heartbeat_timeout``)."""

    heartbeat_timeout: float
    clock: Callable[[], float]

    def __init__(self) -> None:
        self._labels_version = -1
        self._index_cache = LabIndexCache()
        self._requests: dict[str, RequestView] = {}
        self._checked_version: int | None = None
        self._views_version: int | None = None
        self._shapes: dict[str, tuple[tuple[Slot, ...], tuple[Selector, ...] | None]] = {}

    def _owned(self, conn: Connection, client: str, lease_id: str) -> LeaseRecord:
        record = self._load(conn, lease_id)
        if record is None:
            raise ControllerError(f"no lease {lease_id!r}", code="not_found", status=404)
        if record.client != client:
            raise ControllerError(
                f"lease {lease_id} belongs to another client", code="forbidden", status=403
            )
        return record

    def _load(self, conn: Connection, lease_id: str) -> LeaseRecord | None:
        row = conn.execute(select(leases).where(leases.c.id == lease_id)).mappings().first()
        if row is None:
            return None
        names = list(
            conn.execute(
                select(lease_exporters.c.exporter)
                .where(lease_exporters.c.lease_seq == row["seq"])
                .order_by(lease_exporters.c.slot)
            ).scalars()
        )
        record = LeaseRecord.from_row(row, names)
        if record.state is LeaseState.PENDING:
            ahead = conn.execute(
                select(func.count())
                .select_from(leases)
                .where(
                    leases.c.state == LeaseState.PENDING,
                    or_(
                        leases.c.priority > record.priority,
                        and_(leases.c.priority == record.priority, leases.c.seq < record.seq),
                    ),
                )
            ).scalar_one()
            record.position = int(ahead) + 1
            down = out_of_pool(conn, self.clock() - self.heartbeat_timeout)
            if down:
                wanted = [(record.id, record.requests, row["allowed"])]
                reasons = waiting_reasons(self._index_cache.get(conn), down, wanted)
                record.waiting = reasons.get(record.id)
        return record

    def _finish(
        self, conn: Connection, seqs: list[int], state: LeaseState, now: float, why: str
    ) -> Changes:
        changes = Changes()
        rows = conn.execute(select(leases.c.id).where(leases.c.seq.in_(seqs))).scalars()
        changes.leases.update(rows)
        conn.execute(
            update(leases)
            .where(leases.c.seq.in_(seqs))
            .values(state=state, ended_at=now, reason=f"{why} ({iso(now)})")
        )
        holders = conn.execute(
            select(lease_exporters.c.exporter).where(
                lease_exporters.c.lease_seq.in_(seqs), lease_exporters.c.active
            )
        ).scalars()
        changes.exporters.update(holders)
        conn.execute(
            update(lease_exporters)
            .where(lease_exporters.c.lease_seq.in_(seqs))
            .values(active=False)
        )
        return changes

    def _policies(self, conn: Connection) -> list[Policy]:
        rows = conn.execute(select(policies)).mappings().all()
        return [
            Policy(
                row["name"],
                tuple(row["clients"]),
                parse_selector(row["selector"]),
                row["priority"],
                row["max_duration"],
            )
            for row in rows
        ]

    def _lab(self, conn: Connection, now: float) -> tuple[LabIndex, set[str]]:
        """The label index (rebuilt when labels changed) and who is unavailable right now."""
        index = self._index_cache.get(conn)
        self._labels_version = self._index_cache.version
        leased = select(lease_exporters.c.exporter).where(lease_exporters.c.active)
        down = select(exporters.c.name).where(
            or_(
                exporters.c.hook,
                exporters.c.maintenance.is_not(None),
                exporters.c.unhealthy.is_not(None),
                exporters.c.last_seen.is_(None),
                exporters.c.last_seen < now - self.heartbeat_timeout,
            )
        )
        return index, set(conn.execute(leased.union_all(down)).scalars())

    def _request_views(self, conn: Connection) -> list[RequestView]:
        # Only the cheap columns each pass; a request's JSON is read and parsed once (until
        # the lab version moves: a policy change rewrites the requests' limits).
        version = conn.execute(
            select(lab_state.c.exporters_version).where(lab_state.c.id == 1)
        ).scalar_one()
        if version != self._views_version:
            self._requests = {}
            self._views_version = version
        # One column, read as plain strings: this runs every pass, over the whole queue.
        ids: list[str] = list(
            conn.execute(select(leases.c.id).where(leases.c.state == LeaseState.PENDING)).scalars()
        )
        known = self._requests
        missing = [lease_id for lease_id in ids if lease_id not in known]
        for start in range(0, len(missing), 500):
            for new in conn.execute(
                select(
                    leases.c.id,
                    leases.c.seq,
                    leases.c.priority,
                    leases.c.requests,
                    leases.c.allowed,
                ).where(leases.c.id.in_(missing[start : start + 500]))
            ):
                slots, allowed = self._intern(new.requests, new.allowed)
                self._requests[new.id] = RequestView(new.id, new.priority, new.seq, slots, allowed)
        self._requests = {lease_id: known[lease_id] for lease_id in ids}
        return list(self._requests.values())

    def _intern(
        self, requests: list[dict[str, Any]], allowed: list[str] | None
    ) -> tuple[tuple[Slot, ...], tuple[Selector, ...] | None]:
        # Identical requests share one parsed object, so the scheduler compares them by identity.
        key = json.dumps([requests, allowed], sort_keys=True)
        hit = self._shapes.get(key)
        if hit is None:
            slots = tuple(slot_from_json(r) for r in requests)
            limits = None if allowed is None else tuple(map(parse_selector, allowed))
            hit = (slots, limits)
            if len(self._shapes) > 10_000:
                self._shapes.clear()
            self._shapes[key] = hit
        return hit

    def _grant_pass(
        self, conn: Connection, now: float, lab: tuple[LabIndex, set[str]] | None = None
    ) -> Changes:
        changes = Changes()
        requests = self._request_views(conn)
        if not requests:
            self._checked_version = conn.execute(
                select(lab_state.c.exporters_version).where(lab_state.c.id == 1)
            ).scalar_one()
            return changes
        index, unavailable = lab or self._lab(conn, now)
        if self._labels_version != self._checked_version:
            # Exporters were added, relabelled or deleted: some waiters may now be hopeless.
            self._checked_version = self._labels_version
            hopeless = [(r, unsatisfiable_reason(r, index)) for r in requests]
            for request, reason in hopeless:
                if reason:
                    conn.execute(
                        update(leases)
                        .where(leases.c.id == request.id)
                        .values(state=LeaseState.UNSATISFIABLE, ended_at=now, reason=reason)
                    )
                    changes.leases.add(request.id)
            requests = [r for r, reason in hopeless if not reason]
        grants, _positions = schedule(requests, index, unavailable)
        by_id = {r.id: r for r in requests}
        for grant in grants:
            request = by_id[grant.request_id]
            conn.execute(
                update(leases)
                .where(leases.c.seq == request.seq)
                .values(state=LeaseState.READY, granted_at=now, ends_at=now + leases.c.duration)
            )
            conn.execute(
                insert(lease_exporters),
                [
                    {"lease_seq": request.seq, "slot": i, "exporter": name, "active": True}
                    for i, name in enumerate(grant.exporters)
                ],
            )
            changes.leases.add(grant.request_id)
            changes.exporters.update(grant.exporters)
            audit_log.record(
                conn,
                now,
                "grant",
                grant.request_id,
                actor="controller",
                exporters=list(grant.exporters),
            )
        return changes


def slot_json(slot: Slot) -> dict[str, str | None]:
    return {
        "selector": None if slot.selector is None else str(slot.selector),
        "exporter": slot.exporter,
    }
