"""Operations on the lab that are neither a client's nor an exporter's lease traffic: an
admin's maintenance and lease ends, health reports, hook output kept with a lease.

:class:`LabOperations` is a base of :class:`~._store.Store`; like every store operation each
is one transaction, under the lab lock where it can change who holds what.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select, update

from tether.errors import ControllerError

from . import _audit as audit_log
from ._database import Database
from ._granting import GrantPass
from ._records import LIVE_STATES, Changes, LeaseRecord, LeaseState
from ._tables import exporters, lab_state, lease_exporters, leases

__all__ = ["LabOperations"]


class LabOperations(GrantPass):
    """Maintenance, health, admin lease ends and hook reports (a base of the store)."""

    database: Database
    clock: Callable[[], float]

    def set_maintenance(
        self, name: str, reason: str | None, *, end_lease: bool = False
    ) -> tuple[list[str], Changes]:
        """Take an exporter out of the pool (``reason``) or put it back (None).

        Args:
            end_lease: also end its live lease now (otherwise the lease runs to its end).

        Returns:
            The ids of the leases ended, and what changed.

        Raises:
            ControllerError: no such exporter (404).
        """
        now = self.clock()
        with self.database.begin(f"updating exporter {name!r}", lock=True) as conn:
            found = conn.execute(
                update(exporters).where(exporters.c.name == name).values(maintenance=reason)
            )
            if found.rowcount == 0:
                raise ControllerError(f"no exporter named {name!r}", code="not_found", status=404)
            # Other replicas (and a controller beside ``tether admin``) notice and re-read.
            conn.execute(
                update(lab_state)
                .where(lab_state.c.id == 1)
                .values(exporters_version=lab_state.c.exporters_version + 1)
            )
            audit_log.record(
                conn, now, "maintenance_on" if reason else "maintenance_off", name, reason=reason
            )
            changes = Changes(exporters={name})
            ended: list[str] = []
            if reason is not None and end_lease:
                seqs = list(
                    conn.execute(
                        select(lease_exporters.c.lease_seq).where(
                            lease_exporters.c.exporter == name, lease_exporters.c.active
                        )
                    ).scalars()
                )
                if seqs:
                    why = f"ended: exporter {name} went into maintenance ({reason})"
                    finished = self._finish(conn, seqs, LeaseState.ENDED, now, why)
                    ended = sorted(finished.leases)
                    changes.update(finished)
            changes.update(self._grant_pass(conn, now))
        return ended, changes

    def set_health(self, name: str, failure: str | None) -> Changes:
        """Record a health check: ``failure`` (its output) makes the exporter unhealthy."""
        now = self.clock()
        with self.database.begin(f"updating exporter {name!r}", lock=True) as conn:
            result = conn.execute(
                update(exporters)
                .where(
                    exporters.c.name == name,
                    exporters.c.unhealthy.is_(None)
                    if failure is not None
                    else exporters.c.unhealthy.is_not(None),
                )
                .values(unhealthy=failure)
            )
            if result.rowcount == 0:
                if failure is not None:  # still unhealthy: keep the newest output
                    conn.execute(
                        update(exporters).where(exporters.c.name == name).values(unhealthy=failure)
                    )
                return Changes()
            audit_log.record(conn, now, "unhealthy" if failure else "healthy", name, output=failure)
            changes = Changes(exporters={name})
            if failure is None:
                changes.update(self._grant_pass(conn, now))
        return changes

    def end_lease(self, actor: str, lease_id: str) -> tuple[LeaseRecord, Changes]:
        """An admin ends someone's lease (a pending one leaves the queue)."""
        now = self.clock()
        with self.database.begin("ending a lease", lock=True) as conn:
            lease = self._load(conn, lease_id)
            if lease is None:
                raise ControllerError(f"no lease {lease_id!r}", code="not_found", status=404)
            if lease.state not in LIVE_STATES:
                return lease, Changes()
            changes = self._finish(conn, [lease.seq], LeaseState.ENDED, now, f"ended by {actor}")
            audit_log.record(conn, now, "end_lease", lease_id, actor=actor, client=lease.client)
            changes.update(self._grant_pass(conn, now))
            result = self._load(conn, lease_id)
        assert result is not None
        return result, changes

    def record_hook(
        self, name: str, lease_id: str, report: Mapping[str, Any]
    ) -> tuple[LeaseRecord, Changes]:
        """Keep an exporter's hook report with its lease: the newest report of each hook
        (``before_lease``, ``after_lease``) replaces the one before it.

        Raises:
            ControllerError: unknown lease (404), or not one of this exporter's (403).
        """
        now = self.clock()
        with self.database.begin("recording a hook's output", lock=True) as conn:
            record = self._load(conn, lease_id)
            if record is None:
                raise ControllerError(f"no lease {lease_id!r}", code="not_found", status=404)
            if name not in record.exporters:
                raise ControllerError(
                    f"lease {lease_id} is not exporter {name!r}'s", code="forbidden", status=403
                )
            runs = [run for run in record.hooks if run.get("hook") != report["hook"]]
            before = next((r for r in record.hooks if r.get("hook") == report["hook"]), {})
            run = {
                **report,
                "exporter": name,
                # A run that was reported running keeps its start; a new run starts now.
                "started_at": before["started_at"] if before.get("state") == "running" else now,
                "updated_at": now,
                "updates": int(before.get("updates", 0)) + 1,
            }
            runs.append(run)
            conn.execute(update(leases).where(leases.c.id == lease_id).values(hooks=runs))
            result = self._load(conn, lease_id)
        assert result is not None
        return result, Changes(leases={lease_id})
