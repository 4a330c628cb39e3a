"""Identities (clients, exporters) and access policies, straight on the database.

This is what ``tether admin`` runs (against ``--database``, with or without a controller
serving the same database) and what tests use through ``run_controller(...).admin``. Tokens are
made here, returned once, and stored as ``sha256:`` hashes (:mod:`tether.security`).

Policy file (``tether admin policy apply FILE`` replaces every policy with the file's)::

    policies:
      - name: ci-rpi
        clients: [ci-1, ci-2]       # or ["*"] for every client
        selector: board=rpi4        # exporters they may lease
        priority: 10                # higher is served first
        max_duration: 2h            # longest lease, extensions included
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import delete, insert, select, update

from tether.errors import ConfigError, ControllerError
from tether.security import generate_token, hash_token

from . import _audit as audit_log
from ._database import Database
from ._records import Changes, LeaseState, check_name
from ._scheduler import OPEN_MAX_DURATION, LabIndex, Policy, Slot, decide_policy
from ._selector import label_problem, parse_duration, parse_selector
from ._tables import admins, clients, exporters, lab_state, lease_exporters, leases, policies

__all__ = ["Admin", "NewIdentity", "load_policy_file", "make_policy"]


@dataclass(frozen=True, slots=True)
class NewIdentity:
    """A freshly made (or rotated) identity: the token in clear exists only here."""

    kind: str
    name: str
    token: str
    labels: Mapping[str, str]

    def config(self, endpoint: str, ca: str | Path | None = None) -> str:
        """The ready-to-use YAML config for this identity (client or exporter)."""
        lines = [f"# tether {self.kind} config for {self.name} (the token is shown only once)"]
        if self.kind in ("client", "admin"):
            body: dict[str, Any] = {"endpoint": endpoint, "token": self.token}
            if ca is not None:
                body["ca"] = str(ca)
        else:
            controller: dict[str, Any] = {"endpoint": endpoint, "token": self.token}
            if ca is not None:
                controller["ca"] = str(ca)
            body = {"name": self.name, "labels": dict(self.labels), "controller": controller}
        lines.append(yaml.safe_dump(body, sort_keys=False).rstrip())
        return "\n".join(lines) + "\n"


class Admin:
    """Create, list, rotate and delete identities; manage policies.

    Args:
        database: the controller's database (migrated on first use).
        clock: seconds since the epoch (tests may pass their own).
    """

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self.database = database
        self.clock = clock

    # -- identities ---------------------------------------------------------------------------

    def create_client(self, name: str) -> NewIdentity:
        """Make a client identity.

        Raises:
            ControllerError: bad name (``bad_name``) or it exists (``conflict``).
        """
        return self._create_person("client", name)

    def create_admin(self, name: str) -> NewIdentity:
        """Make an admin identity: it may use the dashboard's admin actions, not lease.

        Raises:
            ControllerError: bad name (``bad_name``) or it exists (``conflict``).
        """
        return self._create_person("admin", name)

    def _create_person(self, kind: str, name: str) -> NewIdentity:
        check_name(name, kind)
        table = _table(kind)
        token = generate_token()
        with self.database.begin(f"creating {kind} {name!r}") as conn:
            if conn.execute(select(table.c.name).where(table.c.name == name)).first():
                raise _exists(kind, name)
            conn.execute(
                insert(table).values(
                    name=name, token_hash=hash_token(token), created_at=self.clock()
                )
            )
            _bump_version(conn, exporters=False)
            audit_log.record(conn, self.clock(), f"create_{kind}", name)
        return NewIdentity(kind, name, token, {})

    def create_exporter(self, name: str, labels: Mapping[str, str]) -> NewIdentity:
        """Make an exporter identity with the given labels (the ones policies can trust).

        Raises:
            ControllerError: bad name or label, or the exporter exists.
        """
        check_name(name, "exporter")
        labels = _check_labels(labels)
        token = generate_token()
        with self.database.begin(f"creating exporter {name!r}", lock=True) as conn:
            if conn.execute(select(exporters.c.name).where(exporters.c.name == name)).first():
                raise _exists("exporter", name)
            conn.execute(
                insert(exporters).values(
                    name=name,
                    token_hash=hash_token(token),
                    admin_labels=labels,
                    labels=labels,
                    hook=False,
                    created_at=self.clock(),
                )
            )
            _bump_version(conn)
            audit_log.record(conn, self.clock(), "create_exporter", name, labels=labels)
        return NewIdentity("exporter", name, token, labels)

    def rotate(self, kind: str, name: str) -> NewIdentity:
        """Give an identity a new token; the old one stops working (within about a second)."""
        table = _table(kind)
        token = generate_token()
        with self.database.begin(f"rotating {kind} {name!r}") as conn:
            result = conn.execute(
                update(table).where(table.c.name == name).values(token_hash=hash_token(token))
            )
            if result.rowcount == 0:
                raise _unknown(kind, name)
            _bump_version(conn, exporters=False)
            audit_log.record(conn, self.clock(), f"rotate_{kind}", name)
            labels: dict[str, str] = {}
            if kind == "exporter":
                row = conn.execute(select(exporters.c.admin_labels).where(exporters.c.name == name))
                labels = dict(row.scalar_one())
        return NewIdentity(kind, name, token, labels)

    def delete(self, kind: str, name: str) -> Changes:
        """Delete an identity; its live leases end (reason says why)."""
        table = _table(kind)
        changes = Changes()
        with self.database.begin(f"deleting {kind} {name!r}", lock=True) as conn:
            if conn.execute(delete(table).where(table.c.name == name)).rowcount == 0:
                raise _unknown(kind, name)
            audit_log.record(conn, self.clock(), f"delete_{kind}", name)
            if kind == "admin":
                _bump_version(conn, exporters=False)
                return changes
            if kind == "client":
                live = select(leases.c.seq, leases.c.id).where(
                    leases.c.client == name,
                    leases.c.state.in_([LeaseState.PENDING, LeaseState.READY]),
                )
            else:
                live = (
                    select(leases.c.seq, leases.c.id)
                    .join(lease_exporters, lease_exporters.c.lease_seq == leases.c.seq)
                    .where(lease_exporters.c.exporter == name, lease_exporters.c.active)
                )
            _bump_version(conn, exporters=kind == "exporter")
            rows = conn.execute(live).all()
            seqs = [row.seq for row in rows]
            if seqs:
                conn.execute(
                    update(leases)
                    .where(leases.c.seq.in_(seqs))
                    .values(
                        state=LeaseState.ENDED,
                        ended_at=self.clock(),
                        reason=f"{kind} {name} was deleted",
                    )
                )
                conn.execute(
                    update(lease_exporters)
                    .where(lease_exporters.c.lease_seq.in_(seqs))
                    .values(active=False)
                )
            changes.leases.update(row.id for row in rows)
        return changes

    def identities(self, kind: str) -> list[dict[str, Any]]:
        """Every identity of ``kind``: name, created_at (and labels for exporters)."""
        table = _table(kind)
        columns = [table.c.name, table.c.created_at]
        if kind == "exporter":
            columns.append(exporters.c.labels)
        with self.database.begin(f"listing {kind}s") as conn:
            rows = conn.execute(select(*columns).order_by(table.c.name)).mappings().all()
        return [dict(row) for row in rows]

    # -- policies -----------------------------------------------------------------------------

    # Every policy change re-checks the live leases (:func:`_recheck_live`): waiting requests
    # get the new limits or end, ready leases the new maximum length (for extensions).

    def set_policy(self, policy: Policy) -> Changes:
        """Create or replace one policy; returns the leases that changed."""
        check_name(policy.name, "policy")
        with self.database.begin(f"setting policy {policy.name!r}", lock=True) as conn:
            conn.execute(delete(policies).where(policies.c.name == policy.name))
            conn.execute(insert(policies).values(**_policy_row(policy)))
            audit_log.record(conn, self.clock(), "set_policy", policy.name, **_policy_row(policy))
            return _recheck_live(conn, self.clock())

    def delete_policy(self, name: str) -> Changes:
        """Delete one policy; returns the leases that changed."""
        with self.database.begin(f"deleting policy {name!r}", lock=True) as conn:
            if conn.execute(delete(policies).where(policies.c.name == name)).rowcount == 0:
                raise _unknown("policy", name)
            audit_log.record(conn, self.clock(), "delete_policy", name)
            return _recheck_live(conn, self.clock())

    def replace_policies(self, new: Sequence[Policy]) -> Changes:
        """Replace every policy with ``new`` (what applying a policy file does)."""
        for policy in new:
            check_name(policy.name, "policy")
        with self.database.begin("replacing policies", lock=True) as conn:
            conn.execute(delete(policies))
            if new:
                conn.execute(insert(policies), [_policy_row(p) for p in new])
            names = [p.name for p in new]
            audit_log.record(conn, self.clock(), "replace_policies", "*", policies=names)
            return _recheck_live(conn, self.clock())

    def list_policies(self) -> list[Policy]:
        """Every policy, by name."""
        with self.database.begin("reading policies") as conn:
            rows = conn.execute(select(policies).order_by(policies.c.name)).mappings().all()
        return [
            Policy(
                name=row["name"],
                clients=tuple(row["clients"]),
                selector=parse_selector(row["selector"]),
                priority=row["priority"],
                max_duration=row["max_duration"],
            )
            for row in rows
        ]

    # -- audit --------------------------------------------------------------------------------

    def audit(
        self, *, since: float | None = None, action: str | None = None, limit: int = 1000
    ) -> list[audit_log.AuditEntry]:
        """Audit entries from ``since`` on (oldest first), at most ``limit``."""
        with self.database.read("reading the audit log") as conn:
            return audit_log.read(conn, since=since, action=action, limit=limit)

    def lease_history(self, lease_id: str) -> list[audit_log.AuditEntry]:
        """The audit entries about one lease (grant, extensions, its end), oldest first."""
        with self.database.read("reading a lease's history") as conn:
            return audit_log.read(conn, target=lease_id, limit=200)

    def write_audit(self, auth_failures: Mapping[str, int], prune_before: float | None) -> None:
        """Record counted authentication failures (one entry per address) and drop entries
        older than ``prune_before`` (None: keep all)."""
        now = self.clock()
        with self.database.begin("writing the audit log") as conn:
            for address, count in auth_failures.items():
                with audit_log.acting("anonymous", address):
                    audit_log.record(conn, now, "auth_failure", address, count=count)
            if prune_before is not None:
                audit_log.prune(conn, prune_before)


def load_policy_file(path: str | Path) -> list[Policy]:
    """Read a policy YAML file (format in the module docstring).

    Raises:
        ConfigError: unreadable file, or a bad entry (the message names the entry and field).
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read policy file ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("policies"), list):
        raise ConfigError(f"{path}: expected a mapping with a 'policies' list")
    result: list[Policy] = []
    for index, entry in enumerate(data["policies"]):
        where = f"{path}: policies[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a mapping")
        unknown = set(entry) - {"name", "clients", "selector", "priority", "max_duration"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            result.append(
                make_policy(
                    name=str(entry.get("name", f"policy-{index}")),
                    clients=entry.get("clients", ["*"]),
                    selector=str(entry.get("selector", "")),
                    priority=entry.get("priority", 0),
                    max_duration=entry.get("max_duration", OPEN_MAX_DURATION),
                )
            )
        except ControllerError as exc:
            raise ConfigError(f"{where}: {exc.message}") from exc
    return result


def make_policy(
    *, name: str, clients: Any, selector: str, priority: Any, max_duration: Any
) -> Policy:
    """Validate the parts of a policy and build it.

    Raises:
        ControllerError: a bad selector, duration, priority or client list.
    """
    if isinstance(clients, str):
        clients = [c.strip() for c in clients.split(",") if c.strip()]
    if not isinstance(clients, list) or not clients or not all(isinstance(c, str) for c in clients):
        raise ControllerError("clients: expected a list of client names or ['*']", status=422)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ControllerError(f"priority: expected an integer, got {priority!r}", status=422)
    return Policy(
        name=check_name(name, "policy"),
        clients=tuple(clients),
        selector=parse_selector(selector),
        priority=priority,
        max_duration=parse_duration(max_duration, what="max_duration"),
    )


def _policy_row(policy: Policy) -> dict[str, Any]:
    return {
        "name": policy.name,
        "clients": list(policy.clients),
        "selector": str(policy.selector),
        "priority": policy.priority,
        "max_duration": policy.max_duration,
    }


def _check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    # A label must be usable in a selector, so it follows the selector's word syntax.
    problem = label_problem(labels)
    if problem is not None:
        raise ControllerError(problem, code="bad_label", status=422)
    return dict(labels)


def _recheck_live(conn: Any, now: float) -> Changes:
    """Apply the policies now in the database to every live lease.

    A waiting request no policy covers any more, or now too long, ends (its reason says
    why); the others get the new limits and priority. A ready lease keeps running but gets the
    new maximum length, so extensions are judged by today's policy.
    """
    rows = conn.execute(select(policies)).mappings().all()
    current = [
        Policy(
            row["name"],
            tuple(row["clients"]),
            parse_selector(row["selector"]),
            row["priority"],
            row["max_duration"],
        )
        for row in rows
    ]
    lab = conn.execute(select(exporters.c.name, exporters.c.labels, exporters.c.admin_labels))
    found = lab.all()
    index = LabIndex({r.name: r.labels for r in found}, {r.name: r.admin_labels for r in found})
    changes = Changes()
    live = select(
        leases.c.seq,
        leases.c.id,
        leases.c.client,
        leases.c.state,
        leases.c.requests,
        leases.c.duration,
        leases.c.granted_at,
        leases.c.ends_at,
    ).where(leases.c.state.in_([LeaseState.PENDING, LeaseState.READY]))
    for lease in conn.execute(live).all():
        slots = [
            Slot(exporter=str(r["exporter"]))
            if r.get("exporter")
            else Slot(selector=parse_selector(str(r.get("selector") or "")))
            for r in lease.requests
        ]
        decision = decide_policy(lease.client, current, slots, index)
        if lease.state == LeaseState.READY:
            maximum = OPEN_MAX_DURATION if decision is None else decision.max_duration
            conn.execute(
                update(leases).where(leases.c.seq == lease.seq).values(max_duration=maximum)
            )
            continue
        reason = None
        if decision is None:
            reason = f"the access policies changed: none names client {lease.client} any more"
        elif lease.duration > decision.max_duration + 1e-6:
            reason = (
                f"the access policies changed: {lease.duration:g} s is longer than the "
                f"{decision.max_duration:g} s now allowed"
            )
        if reason is not None:
            conn.execute(
                update(leases)
                .where(leases.c.seq == lease.seq)
                .values(state=LeaseState.ENDED, ended_at=now, reason=reason)
            )
            changes.leases.add(lease.id)
            continue
        assert decision is not None
        conn.execute(
            update(leases)
            .where(leases.c.seq == lease.seq)
            .values(
                allowed=None if decision.allowed is None else [str(a) for a in decision.allowed],
                priority=decision.priority,
                max_duration=decision.max_duration,
            )
        )
        changes.leases.add(lease.id)
    # Controllers cache parsed requests by this version: make them read the new limits.
    _bump_version(conn, exporters=True)
    return changes


def _bump_version(conn: Any, *, exporters: bool = True) -> None:
    values: dict[str, Any] = {"identities_version": lab_state.c.identities_version + 1}
    if exporters:
        values["exporters_version"] = lab_state.c.exporters_version + 1
    conn.execute(update(lab_state).where(lab_state.c.id == 1).values(**values))


def _table(kind: str) -> Any:
    if kind == "client":
        return clients
    if kind == "exporter":
        return exporters
    if kind == "admin":
        return admins
    raise ControllerError(f"unknown identity kind {kind!r}: expected client, exporter or admin")


def _exists(kind: str, name: str) -> ControllerError:
    return ControllerError(f"{kind} {name!r} already exists", code="conflict", status=409)


def _unknown(kind: str, name: str) -> ControllerError:
    return ControllerError(f"no {kind} named {name!r}", code="not_found", status=404)
