"""The soak's books: what the database and the exporters' logs say happened, and the checks.

* **Double grants**, two ways: two leases of one exporter whose granted intervals overlap in
  the controller's database (:func:`double_grants`), and two leases whose sessions were open
  at one moment on one exporter, from the exporter's own log (:class:`ExporterLog`: a
  ``session S opened for lease L`` line while a session of another lease is open in the same
  life of the process; a killed life's sessions died with it).
* **Leaked sessions**: a session still open on an exporter a bounded time after its lease
  ended (:func:`leaked_sessions`), checked during the run and at the end.
* **Accounting** (:func:`unaccounted`): every lease a client held is in the database, granted
  to the exporter the client reached, and that exporter's log has the session the client was
  given; no lease is left live once the clients are gone.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._procs import LIFE_MARK

_OPENED = re.compile(r"session (\S+) opened for lease (\S+)")
_CLOSED = re.compile(r"session (\S+) closed\b")
LIVE = ("pending", "ready")


@dataclass
class LeaseRow:
    """One lease as the controller's database has it."""

    id: str
    state: str
    granted_at: float | None
    ended_at: float | None
    reason: str | None
    exporters: list[str] = field(default_factory=list)


class LabDatabase:
    """Read-only queries on the controller's database (SQLite file or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        args = {"timeout": 30} if url.startswith("sqlite") else {}
        self.engine = create_engine(url, poolclass=NullPool, connect_args=args)

    def leases(self) -> dict[str, LeaseRow]:
        from sqlalchemy import text

        query = text(
            "SELECT l.id, l.state, l.granted_at, l.ended_at, l.reason, e.exporter "
            "FROM leases l LEFT JOIN lease_exporters e ON e.lease_seq = l.seq "
            "ORDER BY l.seq, e.slot"
        )
        found: dict[str, LeaseRow] = {}
        with self.engine.connect() as conn:
            for lease_id, state, granted, ended, reason, exporter in conn.execute(query):
                row = found.setdefault(lease_id, LeaseRow(lease_id, state, granted, ended, reason))
                if exporter is not None:
                    row.exporters.append(exporter)
        return found

    def dispose(self) -> None:
        self.engine.dispose()


def double_grants(rows: dict[str, LeaseRow]) -> list[str]:
    """Pairs of leases of one exporter whose granted intervals overlap."""
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for row in rows.values():
        if row.granted_at is None:
            continue
        ended = row.ended_at if row.ended_at is not None else float("inf")
        for exporter in row.exporters:
            spans.setdefault(exporter, []).append((row.granted_at, ended, row.id))
    found: list[str] = []
    for exporter, each in sorted(spans.items()):
        each.sort()
        latest: tuple[float, str] | None = None  # the latest end so far, and whose
        for granted, ended, lease_id in each:
            if latest is not None and granted < latest[0] - 1e-6:
                found.append(f"{exporter}: leases {latest[1]} and {lease_id} overlap (database)")
            if latest is None or ended > latest[0]:
                latest = (ended, lease_id)
    return found


class ExporterLog:
    """An exporter's log read as it grows: its lives, and each life's sessions."""

    def __init__(self, name: str, path: Path) -> None:
        self.name = name
        self.path = path
        self._offset = 0
        self._partial = b""
        self.life = 0
        self.life_started = 0.0  # wall clock, from the mark
        self.open: dict[str, str] = {}  # session -> lease, in the current life
        self.sessions: dict[str, str] = {}  # every session seen -> its lease
        self.overlaps: list[str] = []
        self.duplicates: list[str] = []  # two sessions for one lease at once (not a grant)

    def read(self) -> None:
        try:
            with self.path.open("rb") as log:
                log.seek(self._offset)
                data = self._partial + log.read()
                self._offset = log.tell()
        except FileNotFoundError:
            return
        *lines, self._partial = data.split(b"\n")
        for line in lines:
            self.feed(line.decode(errors="replace"))

    def feed(self, line: str) -> None:
        if line.startswith(LIFE_MARK):
            self.life += 1
            self.life_started = float(line.split()[-1])
            self.open.clear()
            return
        opened = _OPENED.search(line)
        if opened:
            session, lease = opened.groups()
            others = sorted({each for each in self.open.values() if each != lease})
            if others:
                self.overlaps.append(
                    f"{self.name} (life {self.life}): session {session} of lease {lease} "
                    f"opened while lease {', '.join(others)} had a session open (exporter log)"
                )
            elif lease in self.open.values():
                self.duplicates.append(f"{self.name}: two sessions at once for lease {lease}")
            self.open[session] = lease
            self.sessions[session] = lease
            return
        closed = _CLOSED.search(line)
        if closed:
            self.open.pop(closed.group(1), None)


def leaked_sessions(
    logs: list[ExporterLog], rows: dict[str, LeaseRow], bound: float, since: float
) -> dict[str, str]:
    """Sessions open although their lease ended more than ``bound`` s ago (and more than
    ``bound`` s after ``since``, the controller's last start, wall clock: an exporter learns
    of an end only from a running controller), or that serve a lease of another exporter."""
    now = time.time()
    found: dict[str, str] = {}
    for log in logs:
        for session, lease_id in log.open.items():
            row = rows.get(lease_id)
            if row is not None and row.granted_at is not None and log.name not in row.exporters:
                found[session] = (
                    f"{log.name}: session {session} serves {lease_id} of {row.exporters}"
                )
                continue
            if row is None or row.state in LIVE or row.ended_at is None:
                continue
            start = max(row.ended_at, since, log.life_started)
            if now - start > bound:
                found[session] = (
                    f"{log.name}: session {session} of lease {lease_id} still open "
                    f"{now - row.ended_at:.0f} s after the lease {row.state}"
                )
    return found


def unaccounted(
    holds: dict[str, dict[str, Any]], rows: dict[str, LeaseRow], logs: dict[str, ExporterLog]
) -> list[str]:
    """Leases the clients held that the database or the exporters' logs do not explain,
    and leases the database still has live."""
    found: list[str] = []
    for lease_id, hold in holds.items():
        row = rows.get(lease_id)
        exporter = str(hold.get("exporter"))
        if row is None or row.granted_at is None:
            found.append(f"{lease_id}: held by {hold['worker']} but never granted in the database")
        elif exporter not in row.exporters:
            found.append(f"{lease_id}: held on {exporter}, granted {row.exporters}")
        if hold.get("served_by") != exporter:
            found.append(f"{lease_id}: granted {exporter} but served by {hold.get('served_by')}")
        log = logs.get(exporter)
        if log is None or log.sessions.get(str(hold.get("session"))) != lease_id:
            found.append(f"{lease_id}: {exporter}'s log has no session {hold.get('session')}")
    for row in rows.values():
        if row.state in LIVE:
            found.append(f"{row.id}: still {row.state} with every client gone")
    return found


def ends(rows: dict[str, LeaseRow]) -> dict[str, int]:
    """How the leases ended: ``state: reason`` (without its time stamp) -> count."""
    counted: Counter[str] = Counter()
    for row in rows.values():
        reason = (row.reason or "").split(" (")[0]
        counted[f"{row.state}: {reason}" if reason else row.state] += 1
    return dict(counted.most_common())
