"""The lab's live state on the database: tokens, exporters, leases and the grant pass.

Every operation is one short synchronous transaction (the async server runs them on its
database threads). Operations that can change who holds what take the lab lock and end with a
*grant pass*: load the waiting requests and the grantable exporters, let the pure
:func:`~._scheduler.schedule` decide, write the grants. Exporter labels and parsed requests are
cached per process (labels keyed by ``lab_state.exporters_version``), so a pass over a lab of
thousands of exporters reads only names that are busy or down.

Heartbeats do not write one by one: the server collects them and calls
:meth:`Store.flush_heartbeats` about once a second (client polls and claims likewise,
:meth:`Store.flush_polls`). Long read-only listings are in :mod:`._views`; the grant pass
itself and its caches in :mod:`._granting` (a base class of :class:`Store`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, insert, or_, select, update

from tether.errors import ControllerError
from tether.security import hash_token

from . import _audit as audit_log
from ._database import Database
from ._granting import slot_json
from ._operations import LabOperations
from ._records import (
    LIVE_STATES,
    Changes,
    ExporterRecord,
    Identity,
    LeaseRecord,
    LeaseState,
)
from ._scheduler import (
    RequestView,
    Slot,
    decide_policy,
    unsatisfiable_reason,
)
from ._selector import Selector
from ._tables import admins, clients, exporters, lab_state, lease_exporters, leases
from ._views import LabViews

__all__ = ["Store", "agent_conflict"]

#: How long a token lookup is cached at most. The controller also drops the cache as soon as
#: it sees ``lab_state.identities_version`` move (about once a second).
TOKEN_CACHE_SECONDS = 300.0


class Store(LabOperations):
    """Lease and exporter operations on one database.

    Args:
        database: a migrated :class:`~._database.Database`.
        heartbeat_timeout: seconds without a heartbeat after which an exporter is offline.
        clock: seconds since the epoch.
        max_pending_per_client: lease requests one client may have waiting at once.
    """

    def __init__(
        self,
        database: Database,
        *,
        heartbeat_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        max_pending_per_client: int = 100,
    ) -> None:
        self.database = database
        self.max_pending_per_client = max_pending_per_client
        self.heartbeat_timeout = heartbeat_timeout
        self.clock = clock
        super().__init__()
        self._tokens: dict[str, tuple[Identity | None, float]] = {}
        self._good: set[str] = set()
        self.views = LabViews(database, heartbeat_timeout, clock, self._index_cache)

    # -- identities ---------------------------------------------------------------------------

    def identify(self, token: str) -> Identity | None:
        """The identity a bearer token belongs to, or None."""
        digest = hash_token(token)
        now = time.monotonic()
        cached = self._tokens.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        with self.database.begin("checking a token") as conn:
            identity: Identity | None = None
            name = conn.execute(select(clients.c.name).where(clients.c.token_hash == digest))
            found = name.scalar()
            if found is not None:
                identity = Identity("client", found)
            else:
                name = conn.execute(
                    select(exporters.c.name).where(exporters.c.token_hash == digest)
                )
                found = name.scalar()
                if found is not None:
                    identity = Identity("exporter", found)
            if identity is None:
                name = conn.execute(select(admins.c.name).where(admins.c.token_hash == digest))
                found = name.scalar()
                if found is not None:
                    identity = Identity("admin", found)
        if len(self._tokens) > 100_000:
            self._tokens.clear()
        self._tokens[digest] = (identity, now + TOKEN_CACHE_SECONDS)
        if identity is not None:
            if len(self._good) > 100_000:
                self._good.clear()
            self._good.add(digest)
        return identity

    def known_token(self, token: str) -> bool:
        """True when ``token`` was a valid one here before (no database work): worth a lookup
        even while its peer address is throttled. Survives :meth:`forget_tokens`."""
        return hash_token(token) in self._good

    # -- exporters ----------------------------------------------------------------------------

    def register(
        self,
        name: str,
        labels: Mapping[str, str],
        report: Any,
        agent: str | None = None,
        last_heard: float | None = None,
    ) -> tuple[dict[str, str], Changes]:
        """Record an exporter's labels and driver report; mark it seen and not in a hook.

        Args:
            agent: the registering agent's id; another agent heard from within the heartbeat
                time-out keeps the exporter (this one is refused).
            last_heard: a heartbeat this process saw and has not written yet.

        Returns:
            The effective labels (reported ones under the admin's) and what changed.

        Raises:
            ControllerError: ``agent_conflict`` (409) when another agent serves the exporter.
        """
        now = self.clock()
        with self.database.begin(f"registering exporter {name!r}", lock=True) as conn:
            row = conn.execute(
                select(
                    exporters.c.admin_labels,
                    exporters.c.labels,
                    exporters.c.agent,
                    exporters.c.last_seen,
                ).where(exporters.c.name == name)
            ).first()
            if row is None:
                raise ControllerError(
                    f"exporter {name!r} was deleted", code="unauthorized", status=401
                )
            seen = max(row.last_seen or 0.0, last_heard or 0.0)
            if (
                agent is not None
                and row.agent is not None
                and row.agent != agent
                and seen >= now - self.heartbeat_timeout
            ):
                raise agent_conflict(name, now - seen, self.heartbeat_timeout)
            effective = {**labels, **row.admin_labels}
            conn.execute(
                update(exporters)
                .where(exporters.c.name == name)
                .values(
                    labels=effective,
                    report=report,
                    hook=False,
                    last_seen=now,
                    agent=agent if agent is not None else row.agent,
                )
            )
            if effective != row.labels:
                conn.execute(
                    update(lab_state)
                    .where(lab_state.c.id == 1)
                    .values(exporters_version=lab_state.c.exporters_version + 1)
                )
            changes = self._grant_pass(conn, now)
        changes.exporters.add(name)
        return effective, changes

    def load_mirror(
        self, names: Collection[str] | None
    ) -> tuple[dict[str, list[LeaseRecord]], dict[str, tuple[bool, str | None]]]:
        """Live leases, and hook flags and agents, of the exporters ``names`` (None: of all).

        The controller keeps these in memory so a heartbeat needs no database work.
        """
        with self.database.begin("reading exporter state") as conn:
            hooks = select(exporters.c.name, exporters.c.hook, exporters.c.agent)
            live = (
                select(leases, lease_exporters.c.exporter)
                .join(lease_exporters, lease_exporters.c.lease_seq == leases.c.seq)
                .where(lease_exporters.c.active)
                .order_by(leases.c.seq)
            )
            if names is not None:
                hooks = hooks.where(exporters.c.name.in_(list(names)))
                live = live.where(lease_exporters.c.exporter.in_(list(names)))
            flags = {row.name: (bool(row.hook), row.agent) for row in conn.execute(hooks)}
            found: dict[str, list[LeaseRecord]] = {}
            for row in conn.execute(live).mappings():
                name = row["exporter"]
                found.setdefault(name, []).append(LeaseRecord.from_row(row, [name]))
        return found, flags

    def versions(self) -> tuple[int, int]:
        """``(exporters_version, identities_version)`` from ``lab_state``."""
        with self.database.begin("reading the lab version") as conn:
            row = conn.execute(
                select(lab_state.c.exporters_version, lab_state.c.identities_version)
            ).one()
        return int(row[0]), int(row[1])

    def forget_tokens(self) -> None:
        """Drop cached token lookups (identities changed)."""
        self._tokens.clear()

    def set_hook(self, name: str, hook: bool) -> Changes:
        """Record whether the exporter runs a hook (not grantable meanwhile)."""
        now = self.clock()
        with self.database.begin(f"updating exporter {name!r}", lock=True) as conn:
            result = conn.execute(
                update(exporters)
                .where(exporters.c.name == name, exporters.c.hook != hook)
                .values(hook=hook, last_seen=now)
            )
            if result.rowcount == 0 or hook:
                return Changes()
            return self._grant_pass(conn, now)

    def set_offline(self, name: str) -> Changes:
        """Mark the exporter offline now (no heartbeat seen), out of any hook."""
        with self.database.begin(f"updating exporter {name!r}", lock=True) as conn:
            result = conn.execute(
                update(exporters).where(exporters.c.name == name).values(hook=False, last_seen=None)
            )
        return Changes(exporters={name}) if result.rowcount else Changes()

    def flush_heartbeats(self, seen: Mapping[str, float]) -> Changes:
        """Write the collected heartbeat times; a pass runs when an offline exporter came back."""
        if not seen:
            return Changes()
        now = self.clock()
        cutoff = now - self.heartbeat_timeout
        names = list(seen)
        with self.database.begin("recording heartbeats", lock=True) as conn:
            revived = conn.execute(
                select(func.count())
                .select_from(exporters)
                .where(
                    exporters.c.name.in_(names),
                    or_(exporters.c.last_seen.is_(None), exporters.c.last_seen < cutoff),
                )
            ).scalar_one()
            conn.execute(
                update(exporters)
                .where(exporters.c.name == bindparam("b_name"))
                .values(last_seen=bindparam("b_seen")),
                [{"b_name": n, "b_seen": t} for n, t in seen.items()],
            )
            return self._grant_pass(conn, now) if revived else Changes()

    def exporter_leases(self, name: str) -> list[LeaseRecord]:
        """The exporter's live (ready) leases."""
        with self.database.begin("reading exporter leases") as conn:
            return self._exporter_leases(conn, name)

    def _exporter_leases(self, conn: Connection, name: str) -> list[LeaseRecord]:
        rows = conn.execute(
            select(leases)
            .join(lease_exporters, lease_exporters.c.lease_seq == leases.c.seq)
            .where(lease_exporters.c.exporter == name, lease_exporters.c.active)
            .order_by(leases.c.seq)
        ).mappings()
        return [LeaseRecord.from_row(row, [name]) for row in rows]

    def list_exporters(self, selector: Selector | None = None) -> list[ExporterRecord]:
        """Every exporter (matching ``selector``) with its status (a read-only transaction)."""
        return self.views.exporters(selector)

    # -- leases -------------------------------------------------------------------------------

    def create_lease(
        self, client: str, slots: Sequence[Slot], duration: float
    ) -> tuple[LeaseRecord, Changes]:
        """Queue a lease request and run a grant pass (it may be granted at once).

        Raises:
            ControllerError: ``not_found`` for an exporter name nobody created, ``forbidden``
                when no policy covers the client, ``too_long`` when ``duration`` is above the
                policy maximum.
        """
        now = self.clock()
        lease_id = uuid.uuid4().hex
        with self.database.begin("creating a lease", lock=True) as conn:
            waiting = conn.execute(
                select(func.count())
                .select_from(leases)
                .where(leases.c.client == client, leases.c.state == LeaseState.PENDING)
            ).scalar_one()
            if waiting >= self.max_pending_per_client:
                raise ControllerError(
                    f"client {client!r} already has {waiting} lease requests waiting, the most "
                    f"allowed ({self.max_pending_per_client}); release some first",
                    code="too_many_pending",
                    status=429,
                    limit=self.max_pending_per_client,
                )
            lab = self._lab(conn, now)
            for slot in slots:
                if slot.exporter is not None and slot.exporter not in lab[0].names:
                    raise ControllerError(
                        f"no exporter named {slot.exporter!r}", code="not_found", status=404
                    )
            decision = decide_policy(client, self._policies(conn), slots, lab[0])
            if decision is None:
                raise ControllerError(
                    f"client {client!r} may not lease anything: no access policy names it",
                    code="forbidden",
                    status=403,
                )
            if duration > decision.max_duration:
                raise _too_long(duration, decision.max_duration)
            request = RequestView(lease_id, decision.priority, 0, tuple(slots), decision.allowed)
            reason = unsatisfiable_reason(request, lab[0])
            values = {
                "id": lease_id,
                "client": client,
                "state": LeaseState.UNSATISFIABLE if reason else LeaseState.PENDING,
                "requests": [slot_json(s) for s in slots],
                "allowed": None if decision.allowed is None else [str(s) for s in decision.allowed],
                "duration": duration,
                "max_duration": decision.max_duration,
                "priority": decision.priority,
                "created_at": now,
                "reason": reason,
            }
            if reason:
                values["ended_at"] = now
            conn.execute(insert(leases).values(**values))
            changes = Changes() if reason else self._grant_pass(conn, now, lab)
            changes.leases.add(lease_id)  # the queue changed: watchers of the lab look again
            audit_log.record(
                conn, now, "request", lease_id, actor=client, priority=decision.priority
            )
            record = self._load(conn, lease_id)
        assert record is not None
        return record, changes

    def get_lease(self, lease_id: str) -> LeaseRecord | None:
        """One lease (with its queue position while pending), or None."""
        with self.database.begin("reading a lease") as conn:
            return self._load(conn, lease_id)

    def list_leases(self, client: str, *, include_ended: bool = False) -> list[LeaseRecord]:
        """The client's live leases (plus its last 100 finished ones with ``include_ended``)."""
        return self.views.client_leases(client, include_ended=include_ended)

    def extend(self, client: str, lease_id: str, seconds: float) -> tuple[LeaseRecord, Changes]:
        """Move a ready lease's end by ``seconds``.

        Raises:
            ControllerError: unknown lease, not the holder, not ready, or past the maximum.
        """
        with self.database.begin("extending a lease", lock=True) as conn:
            record = self._owned(conn, client, lease_id)
            if record.state is not LeaseState.READY:
                raise ControllerError(
                    f"lease {lease_id} is {record.state.value}, only a ready lease can be extended",
                    code="lease_not_live",
                    status=409,
                    state=record.state.value,
                )
            assert record.ends_at is not None and record.granted_at is not None
            new_end = record.ends_at + seconds
            if new_end - record.granted_at > record.max_duration + 1e-6:
                raise _too_long(new_end - record.granted_at, record.max_duration)
            conn.execute(
                update(leases)
                .where(leases.c.seq == record.seq)
                .values(ends_at=new_end, duration=new_end - record.granted_at)
            )
            audit_log.record(conn, self.clock(), "extend", lease_id, actor=client, seconds=seconds)
            result = self._load(conn, lease_id)
        assert result is not None
        return result, Changes({lease_id}, set(result.exporters))

    def release(self, client: str, lease_id: str) -> tuple[LeaseRecord, Changes]:
        """End a pending or ready lease (idempotent on finished ones)."""
        now = self.clock()
        with self.database.begin("releasing a lease", lock=True) as conn:
            record = self._owned(conn, client, lease_id)
            if record.state not in LIVE_STATES:
                return record, Changes()
            changes = self._finish(conn, [record.seq], LeaseState.ENDED, now, "released")
            audit_log.record(conn, now, "release", lease_id, actor=client)
            changes.update(self._grant_pass(conn, now))
            result = self._load(conn, lease_id)
        assert result is not None
        return result, changes

    def expire_due(self) -> Changes:
        """End every ready lease whose time is up, then hand their exporters on."""
        now = self.clock()
        with self.database.begin("expiring leases", lock=True) as conn:
            due = list(
                conn.execute(
                    select(leases.c.seq).where(
                        leases.c.state == LeaseState.READY, leases.c.ends_at <= now
                    )
                ).scalars()
            )
            if not due:
                return Changes()
            changes = self._finish(conn, due, LeaseState.EXPIRED, now, "expired at its end time")
            for lease_id in sorted(changes.leases):
                audit_log.record(conn, now, "expire", lease_id, actor="controller")
            changes.update(self._grant_pass(conn, now))
        return changes

    def flush_polls(self, polled: Mapping[str, float], claimed: Mapping[str, float]) -> None:
        """Write when clients last polled their pending requests, and first saw them granted."""
        if not polled and not claimed:
            return
        with self.database.begin("recording lease polls") as conn:
            if polled:
                conn.execute(
                    update(leases)
                    .where(leases.c.id == bindparam("b_id"), leases.c.state == LeaseState.PENDING)
                    .values(polled_at=bindparam("b_at")),
                    [{"b_id": i, "b_at": t} for i, t in polled.items()],
                )
            if claimed:
                conn.execute(
                    update(leases)
                    .where(leases.c.id == bindparam("b_id"), leases.c.claimed_at.is_(None))
                    .values(claimed_at=bindparam("b_at")),
                    [{"b_id": i, "b_at": t} for i, t in claimed.items()],
                )

    def lapse(self, pending_timeout: float, claim_timeout: float) -> Changes:
        """End pending requests nobody polled for ``pending_timeout`` seconds, and granted
        leases nobody claimed within ``claim_timeout`` seconds; hand their exporters on."""
        now = self.clock()
        stale = and_(
            leases.c.state == LeaseState.PENDING,
            func.coalesce(leases.c.polled_at, leases.c.created_at) < now - pending_timeout,
        )
        unclaimed = and_(
            leases.c.state == LeaseState.READY,
            leases.c.claimed_at.is_(None),
            leases.c.granted_at < now - claim_timeout,
        )
        with self.database.read("finding abandoned leases") as conn:
            found = conn.execute(select(leases.c.seq).where(or_(stale, unclaimed)).limit(1))
            if found.first() is None:
                return Changes()
        with self.database.begin("ending abandoned leases", lock=True) as conn:
            changes = Changes()
            lapsed = list(conn.execute(select(leases.c.seq).where(stale)).scalars())
            if lapsed:
                why = f"the client stopped polling the request for {pending_timeout:g} s"
                changes.update(self._finish(conn, lapsed, LeaseState.ENDED, now, why))
            dropped = list(conn.execute(select(leases.c.seq).where(unclaimed)).scalars())
            if dropped:
                why = f"nobody claimed the lease within {claim_timeout:g} s of its grant"
                changes.update(self._finish(conn, dropped, LeaseState.ENDED, now, why))
            if changes:
                changes.update(self._grant_pass(conn, now))
        return changes

    def end_by_exporter(self, name: str, lease_id: str, reason: str) -> tuple[LeaseRecord, Changes]:
        """An exporter ends one of its live leases (its ``before_lease`` hook failed...).

        Raises:
            ControllerError: unknown lease (404), or not one of this exporter's (403).
        """
        now = self.clock()
        with self.database.begin("ending a lease for its exporter", lock=True) as conn:
            record = self._load(conn, lease_id)
            if record is None:
                raise ControllerError(f"no lease {lease_id!r}", code="not_found", status=404)
            if name not in record.exporters:
                raise ControllerError(
                    f"lease {lease_id} is not exporter {name!r}'s", code="forbidden", status=403
                )
            if record.state not in LIVE_STATES:
                return record, Changes()
            why = f"exporter {name}: {reason}"
            changes = self._finish(conn, [record.seq], LeaseState.ENDED, now, why)
            changes.update(self._grant_pass(conn, now))
            result = self._load(conn, lease_id)
        assert result is not None
        return result, changes

    def run_pass(self) -> Changes:
        """Run a grant pass on its own (after exporters changed outside this process)."""
        now = self.clock()
        with self.database.begin("granting leases", lock=True) as conn:
            return self._grant_pass(conn, now)

    def next_expiry(self) -> float | None:
        """When the next ready lease ends (seconds since the epoch), or None."""
        with self.database.begin("reading lease deadlines") as conn:
            value = conn.execute(
                select(func.min(leases.c.ends_at)).where(leases.c.state == LeaseState.READY)
            ).scalar()
        return None if value is None else float(value)

    def has_pending(self) -> bool:
        """True when some lease waits in the queue."""
        with self.database.begin("reading the queue") as conn:
            row = conn.execute(
                select(leases.c.seq).where(leases.c.state == LeaseState.PENDING).limit(1)
            )
            return row.first() is not None


def agent_conflict(name: str, age: float, timeout: float) -> ControllerError:
    """The refusal a second agent for one exporter gets."""
    return ControllerError(
        f"exporter {name!r} is already served by another agent (heard from {max(age, 0):.0f} s "
        f"ago); stop that one first, or wait {timeout:g} s after it stopped",
        code="agent_conflict",
        status=409,
        exporter=name,
    )


def _too_long(seconds: float, maximum: float) -> ControllerError:
    return ControllerError(
        f"a lease of {seconds:g} s is longer than the {maximum:g} s the access policy allows",
        code="too_long",
        status=422,
        max_duration=maximum,
    )
