"""The read side: every exporter with its holder, the whole queue, a client's leases, counts.

The API's listings, the dashboard, ``tether queue``, ``tether exporters`` and ``/metrics``
read through these functions. Each
is a handful of queries whatever the lab's size (queue positions come from one ordered read,
not a count per request), in a read-only transaction that never waits for the write lock;
the controller runs them on its reader threads (``Controller.run_read``), off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, case, func, select

from ._database import Database
from ._records import LIVE_STATES, ExporterRecord, ExporterStatus, LeaseRecord, LeaseState
from ._selector import Selector
from ._tables import exporters, lease_exporters, leases
from ._waiting import LabIndexCache, out_of_pool, waiting_reasons

__all__ = ["LabCounts", "LabViews", "queue_positions"]

_EXPORTER_COLUMNS = select(
    exporters.c.name,
    exporters.c.labels,
    exporters.c.hook,
    exporters.c.last_seen,
    exporters.c.maintenance,
    exporters.c.unhealthy,
    exporters.c.agent,
)


@dataclass(frozen=True, slots=True)
class LabCounts:
    """How many leases and exporters are in each state (for ``/metrics`` and the dashboard)."""

    leases: dict[str, int]
    exporters: dict[str, int]


class LabViews:
    """Read-only views of the whole lab.

    Args:
        database: the controller's database.
        heartbeat_timeout: silence after which an exporter counts as offline, seconds.
        clock: seconds since the epoch.
        index_cache: the label index to share (the store's grant pass keeps one).
    """

    def __init__(
        self,
        database: Database,
        heartbeat_timeout: float,
        clock: Callable[[], float],
        index_cache: LabIndexCache | None = None,
    ) -> None:
        self.database = database
        self.heartbeat_timeout = heartbeat_timeout
        self.clock = clock
        self.index_cache = index_cache or LabIndexCache()

    def exporters(
        self, selector: Selector | None = None, limit: int | None = None
    ) -> list[ExporterRecord]:
        """Every exporter (matching ``selector`` on its labels; the first ``limit`` by name),
        with status and holder."""
        query = _EXPORTER_COLUMNS.order_by(exporters.c.name)
        if selector is None and limit is not None:
            query = query.limit(limit)
        with self.database.read("listing exporters") as conn:
            return self._exporter_records(conn, query, selector, limit)

    def exporters_named(self, names: Collection[str]) -> list[ExporterRecord]:
        """The exporters of ``names`` that exist, by name, with status and holder (for the
        dashboard's rows that changed)."""
        out: list[ExporterRecord] = []
        ordered = sorted(names)
        with self.database.read("reading exporters") as conn:
            for start in range(0, len(ordered), 500):
                chunk = ordered[start : start + 500]
                query = _EXPORTER_COLUMNS.where(exporters.c.name.in_(chunk))
                out += self._exporter_records(conn, query.order_by(exporters.c.name))
        return out

    def _exporter_records(
        self,
        conn: Connection,
        query: Select[Any],
        selector: Selector | None = None,
        limit: int | None = None,
    ) -> list[ExporterRecord]:
        cutoff = self.clock() - self.heartbeat_timeout
        held = {
            row.exporter: (row.id, row.client)
            for row in conn.execute(
                select(lease_exporters.c.exporter, leases.c.id, leases.c.client)
                .join(leases, leases.c.seq == lease_exporters.c.lease_seq)
                .where(lease_exporters.c.active)
            )
        }
        out: list[ExporterRecord] = []
        for row in conn.execute(query):
            if selector is not None and not selector.matches(row.labels):
                continue
            if limit is not None and len(out) == limit:
                break
            lease, holder = held.get(row.name, (None, None))
            out.append(
                ExporterRecord(
                    row.name,
                    row.labels,
                    exporter_status(row, lease is not None, cutoff),
                    lease,
                    row.last_seen,
                    agent=row.agent,
                    holder=holder,
                    maintenance=row.maintenance,
                    health=row.unhealthy,
                )
            )
        return out

    def queue(self, limit: int | None = None) -> tuple[list[LeaseRecord], int]:
        """The pending requests in the order they will be served, with positions and, for
        those that wait on exporters out of the pool, why (``waiting``).

        Returns:
            The first ``limit`` requests (all when None) and how many wait in all.
        """
        with self.database.read("reading the queue") as conn:
            query = (
                select(leases)
                .where(leases.c.state == LeaseState.PENDING)
                .order_by(leases.c.priority.desc(), leases.c.seq)
            )
            total = conn.execute(
                select(func.count()).select_from(leases).where(leases.c.state == LeaseState.PENDING)
            ).scalar_one()
            if limit is not None:
                query = query.limit(limit)
            rows = conn.execute(query).mappings().all()
            records = [LeaseRecord.from_row(row, []) for row in rows]
            self._note_waiting(conn, rows, records)
        for position, record in enumerate(records, 1):
            record.position = position
        return records, int(total)

    def client_leases(self, client: str, *, include_ended: bool = False) -> list[LeaseRecord]:
        """The client's live leases (plus its last 100 finished ones with ``include_ended``),
        pending ones with their queue position and why they wait."""
        with self.database.read("listing leases") as conn:
            query = select(leases).where(leases.c.client == client)
            rows = list(conn.execute(query.where(leases.c.state.in_(LIVE_STATES))).mappings())
            if include_ended:
                ended = query.where(leases.c.state.not_in(LIVE_STATES))
                rows += conn.execute(ended.order_by(leases.c.seq.desc()).limit(100)).mappings()
            granted = _granted(conn, [row["seq"] for row in rows])
            records = [LeaseRecord.from_row(row, granted.get(row["seq"], [])) for row in rows]
            pending = [row for row in rows if row["state"] == LeaseState.PENDING]
            if pending:
                positions = queue_positions(conn)
                for record in records:
                    record.position = positions.get(record.seq)
                self._note_waiting(conn, pending, records)
        return sorted(records, key=lambda r: r.seq)

    def _note_waiting(
        self, conn: Connection, rows: Sequence[RowMapping], records: list[LeaseRecord]
    ) -> None:
        """Fill in ``waiting`` of ``records`` from their pending ``rows``."""
        down = out_of_pool(conn, self.clock() - self.heartbeat_timeout)
        if not down or not rows:
            return
        wanted = ((row["id"], row["requests"], row["allowed"]) for row in rows)
        reasons = waiting_reasons(self.index_cache.get(conn), down, wanted)
        for record in records:
            record.waiting = reasons.get(record.id, record.waiting)

    def leases(self, recent: int = 50) -> list[LeaseRecord]:
        """Ready leases, then the ``recent`` latest finished ones (newest first)."""
        with self.database.read("listing leases") as conn:
            live = select(leases).where(leases.c.state == LeaseState.READY).order_by(leases.c.seq)
            ended = (
                select(leases)
                .where(leases.c.state.not_in(LIVE_STATES))
                .order_by(leases.c.seq.desc())
                .limit(recent)
            )
            rows = [*conn.execute(live).mappings(), *conn.execute(ended).mappings()]
            names = _granted(conn, [row["seq"] for row in rows])
        return [LeaseRecord.from_row(row, names.get(row["seq"], [])) for row in rows]

    def leases_by_id(self, ids: Collection[str]) -> list[LeaseRecord]:
        """The leases of ``ids`` that exist, with their granted exporters (no positions)."""
        ordered = sorted(ids)
        with self.database.read("reading leases") as conn:
            rows: list[RowMapping] = []
            for start in range(0, len(ordered), 500):
                chunk = ordered[start : start + 500]
                rows += conn.execute(select(leases).where(leases.c.id.in_(chunk))).mappings()
            names = _granted(conn, [row["seq"] for row in rows])
        return [LeaseRecord.from_row(row, names.get(row["seq"], [])) for row in rows]

    def out_of_pool(self) -> dict[str, str]:
        """Exporter name → why it is out of the pool, for every exporter that is."""
        with self.database.read("reading exporters out of the pool") as conn:
            return out_of_pool(conn, self.clock() - self.heartbeat_timeout)

    def counts(self) -> LabCounts:
        """Leases by state and exporters by status, each in one aggregate query."""
        cutoff = self.clock() - self.heartbeat_timeout
        with self.database.read("counting the lab") as conn:
            by_state: dict[str, int] = {
                row[0]: row[1]
                for row in conn.execute(
                    select(leases.c.state, func.count()).group_by(leases.c.state)
                )
            }
            leased = select(lease_exporters.c.exporter).where(lease_exporters.c.active)
            status = case(
                (exporters.c.maintenance.is_not(None), ExporterStatus.MAINTENANCE.value),
                (
                    exporters.c.last_seen.is_(None) | (exporters.c.last_seen < cutoff),
                    ExporterStatus.OFFLINE.value,
                ),
                (exporters.c.unhealthy.is_not(None), ExporterStatus.UNHEALTHY.value),
                (exporters.c.hook, ExporterStatus.HOOK.value),
                (exporters.c.name.in_(leased), ExporterStatus.LEASED.value),
                else_=ExporterStatus.AVAILABLE.value,
            )
            by_status: dict[str, int] = {
                row[0]: row[1]
                for row in conn.execute(select(status, func.count()).group_by(status))
            }
        return LabCounts(
            leases={state.value: int(by_state.get(state.value, 0)) for state in LeaseState},
            exporters={s.value: int(by_status.get(s.value, 0)) for s in ExporterStatus},
        )

    def granted_since(self, since: float) -> list[tuple[float, float]]:
        """``(created_at, granted_at)`` of leases granted after ``since``."""
        with self.database.read("reading grants") as conn:
            rows = conn.execute(
                select(leases.c.created_at, leases.c.granted_at).where(leases.c.granted_at > since)
            ).all()
        return [(row.created_at, row.granted_at) for row in rows]

    def finished_since(self, since: float) -> list[tuple[float, float]]:
        """``(granted_at, ended_at)`` of granted leases that ended after ``since``."""
        with self.database.read("reading finished leases") as conn:
            rows = conn.execute(
                select(leases.c.granted_at, leases.c.ended_at).where(
                    leases.c.ended_at > since, leases.c.granted_at.is_not(None)
                )
            ).all()
        return [(row.granted_at, row.ended_at) for row in rows]


def exporter_status(row: Any, leased: bool, cutoff: float) -> ExporterStatus:
    """An exporter's status from its row (maintenance first: an admin's word wins)."""
    if row.maintenance is not None:
        return ExporterStatus.MAINTENANCE
    if row.last_seen is None or row.last_seen < cutoff:
        return ExporterStatus.OFFLINE
    if row.unhealthy is not None:
        return ExporterStatus.UNHEALTHY
    if row.hook:
        return ExporterStatus.HOOK
    if leased:
        return ExporterStatus.LEASED
    return ExporterStatus.AVAILABLE


def _granted(conn: Connection, seqs: list[int]) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for start in range(0, len(seqs), 500):
        rows = conn.execute(
            select(lease_exporters.c.lease_seq, lease_exporters.c.exporter)
            .where(lease_exporters.c.lease_seq.in_(seqs[start : start + 500]))
            .order_by(lease_exporters.c.lease_seq, lease_exporters.c.slot)
        )
        for row in rows:
            found.setdefault(row.lease_seq, []).append(row.exporter)
    return found


def queue_positions(conn: Connection) -> dict[int, int]:
    """Queue position (1-based) of every pending request, by ``seq``: one query."""
    order = (
        select(leases.c.seq)
        .where(leases.c.state == LeaseState.PENDING)
        .order_by(leases.c.priority.desc(), leases.c.seq)
    )
    return {seq: i for i, seq in enumerate(conn.execute(order).scalars(), start=1)}
