"""The audit log: who did what, when, from which address.

Store and admin operations call :func:`record` inside their own transaction, so an entry exists
exactly when the change it describes was committed. Who acts and from where is carried by a
context variable the HTTP layer sets per request (:func:`acting`); work the controller does by
itself (grants, expiries) is recorded as ``controller``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from ._records import iso
from ._tables import audit

__all__ = ["AuditEntry", "act_as", "acting", "prune", "read", "record"]

_MAX_DETAIL = 2000

_who: contextvars.ContextVar[tuple[str, str | None]] = contextvars.ContextVar(
    "tether_audit_who", default=("controller", None)
)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit record."""

    seq: int
    at: float
    actor: str
    action: str
    target: str
    address: str | None
    details: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of ``GET /v1/admin/audit`` entries."""
        return {
            "seq": self.seq,
            "at": iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "address": self.address,
            "details": self.details,
        }


@contextmanager
def acting(actor: str, address: str | None) -> Iterator[None]:
    """Record what happens inside as done by ``actor`` from ``address``."""
    token = _who.set((actor, address))
    try:
        yield
    finally:
        _who.reset(token)


def act_as(actor: str, address: str | None) -> None:
    """Record what the current task does from now on as done by ``actor`` from ``address``
    (the HTTP layer calls it once it knows who sent the request)."""
    _who.set((actor, address))


def record(
    conn: Connection,
    at: float,
    action: str,
    target: str,
    *,
    actor: str | None = None,
    **details: Any,
) -> None:
    """Add one entry in ``conn``'s transaction (long detail strings are cut)."""
    who, address = _who.get()
    kept = {
        key: value[:_MAX_DETAIL] if isinstance(value, str) else value
        for key, value in details.items()
        if value is not None
    }
    conn.execute(
        insert(audit).values(
            at=at,
            actor=(actor or who)[:200],
            action=action,
            target=target[:200],
            address=address,
            details=kept or None,
        )
    )


def read(
    conn: Connection,
    *,
    since: float | None = None,
    action: str | None = None,
    target: str | None = None,
    limit: int = 1000,
) -> list[AuditEntry]:
    """Entries from ``since`` on (oldest first), at most ``limit``."""
    query = select(audit).order_by(audit.c.seq)
    if since is not None:
        query = query.where(audit.c.at >= since)
    if action is not None:
        query = query.where(audit.c.action == action)
    if target is not None:
        query = query.where(audit.c.target == target)
    rows = conn.execute(query.limit(limit)).mappings()
    return [
        AuditEntry(
            row["seq"],
            row["at"],
            row["actor"],
            row["action"],
            row["target"],
            row["address"],
            dict(row["details"] or {}),
        )
        for row in rows
    ]


def prune(conn: Connection, before: float) -> int:
    """Delete entries older than ``before``; how many went."""
    return int(conn.execute(delete(audit).where(audit.c.at < before)).rowcount or 0)
