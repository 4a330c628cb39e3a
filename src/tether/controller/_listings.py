"""The read side: listings that may be long (a client's queue, a big lab).

They run on the controller's reader threads in read-only transactions (on SQLite a deferred
``BEGIN``, beside the writer, never waiting for the write lock), and each is a fixed number of
queries whatever its length: queue positions come from one ordered scan of the waiting
requests, not one count per lease.
"""

from __future__ import annotations

from sqlalchemy import Connection, select

from ._database import Database
from ._records import LIVE_STATES, ExporterRecord, ExporterStatus, LeaseRecord, LeaseState
from ._selector import Selector
from ._tables import exporters, lease_exporters, leases

__all__ = ["list_exporters", "list_leases", "queue_positions"]


def list_exporters(
    database: Database, cutoff: float, selector: Selector | None = None
) -> list[ExporterRecord]:
    """Every exporter (matching ``selector``) with its status; offline when last seen before
    ``cutoff``."""
    with database.read("listing exporters") as conn:
        held = dict(
            conn.execute(
                select(lease_exporters.c.exporter, leases.c.id)
                .join(leases, leases.c.seq == lease_exporters.c.lease_seq)
                .where(lease_exporters.c.active)
            ).all()
        )
        rows = conn.execute(
            select(
                exporters.c.name,
                exporters.c.labels,
                exporters.c.hook,
                exporters.c.last_seen,
                exporters.c.agent,
            ).order_by(exporters.c.name)
        ).all()
    out = []
    for row in rows:
        if selector is not None and not selector.matches(row.labels):
            continue
        if row.last_seen is None or row.last_seen < cutoff:
            status = ExporterStatus.OFFLINE
        elif row.hook:
            status = ExporterStatus.HOOK
        elif row.name in held:
            status = ExporterStatus.LEASED
        else:
            status = ExporterStatus.AVAILABLE
        out.append(
            ExporterRecord(
                row.name, row.labels, status, held.get(row.name), row.last_seen, row.agent
            )
        )
    return out


def list_leases(
    database: Database, client: str, *, include_ended: bool = False
) -> list[LeaseRecord]:
    """The client's live leases (plus its last 100 finished ones with ``include_ended``)."""
    with database.read("listing leases") as conn:
        query = select(leases).where(leases.c.client == client)
        rows = list(conn.execute(query.where(leases.c.state.in_(LIVE_STATES))).mappings())
        if include_ended:
            ended = query.where(leases.c.state.not_in(LIVE_STATES))
            rows += conn.execute(ended.order_by(leases.c.seq.desc()).limit(100)).mappings()
        seqs = [row["seq"] for row in rows]
        granted: dict[int, list[str]] = {}
        for start in range(0, len(seqs), 500):
            for link in conn.execute(
                select(lease_exporters.c.lease_seq, lease_exporters.c.exporter)
                .where(lease_exporters.c.lease_seq.in_(seqs[start : start + 500]))
                .order_by(lease_exporters.c.lease_seq, lease_exporters.c.slot)
            ):
                granted.setdefault(link.lease_seq, []).append(link.exporter)
        records = [LeaseRecord.from_row(row, granted.get(row["seq"], [])) for row in rows]
        if any(r.state is LeaseState.PENDING for r in records):
            positions = queue_positions(conn)
            for record in records:
                record.position = positions.get(record.seq)
    return sorted(records, key=lambda r: r.seq)


def queue_positions(conn: Connection) -> dict[int, int]:
    """Queue position (1-based) of every pending request, by ``seq``: one query."""
    order = (
        select(leases.c.seq)
        .where(leases.c.state == LeaseState.PENDING)
        .order_by(leases.c.priority.desc(), leases.c.seq)
    )
    return {seq: i for i, seq in enumerate(conn.execute(order).scalars(), start=1)}
