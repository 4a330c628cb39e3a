"""Plain records the store hands out, and their JSON shapes (see docs/controller-api.md)."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from tether.errors import ControllerError

__all__ = [
    "LIVE_STATES",
    "Changes",
    "ExporterRecord",
    "ExporterStatus",
    "Identity",
    "LeaseRecord",
    "LeaseState",
    "check_name",
    "iso",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


def check_name(name: str, what: str) -> str:
    """Refuse names that would not survive URLs, YAML and shells unquoted."""
    if not _NAME.match(name):
        raise ControllerError(
            f"bad {what} name {name!r}: expected 1-200 letters, digits, '_', '.', '-' "
            "(starting with a letter or digit)",
            code="bad_name",
            status=422,
        )
    return name


def iso(timestamp: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC (``...Z``), None stays None."""
    if timestamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(timestamp, datetime.UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


class LeaseState(StrEnum):
    """A lease's life: pending → ready → ended | expired; or unsatisfiable at once."""

    PENDING = "pending"
    READY = "ready"
    ENDED = "ended"
    EXPIRED = "expired"
    UNSATISFIABLE = "unsatisfiable"


LIVE_STATES = (LeaseState.PENDING, LeaseState.READY)


class ExporterStatus(StrEnum):
    """What an exporter is doing, as clients see it."""

    AVAILABLE = "available"
    LEASED = "leased"
    HOOK = "hook"
    OFFLINE = "offline"
    #: Its health check failed (``health:`` in its config); back when one passes.
    UNHEALTHY = "unhealthy"
    #: An admin took it out of the pool (``tether admin maintenance NAME on``).
    MAINTENANCE = "maintenance"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who presented a token."""

    kind: Literal["client", "exporter", "admin"]
    name: str


@dataclass(slots=True)
class LeaseRecord:
    """One lease, as stored, plus its granted exporters."""

    seq: int
    id: str
    client: str
    state: LeaseState
    requests: list[dict[str, str | None]]
    duration: float
    max_duration: float
    priority: int
    created_at: float
    granted_at: float | None = None
    ends_at: float | None = None
    ended_at: float | None = None
    reason: str | None = None
    exporters: list[str] = field(default_factory=list)
    position: int | None = None
    claimed_at: float | None = None
    hooks: list[dict[str, Any]] = field(default_factory=list)
    #: Why a pending request is still waiting, when the scheduler can say (None otherwise).
    waiting: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[Any, Any], exporters: list[str]) -> LeaseRecord:
        """Build from a ``leases`` row and the names granted to it (slot order)."""
        return cls(
            seq=row["seq"],
            id=row["id"],
            client=row["client"],
            state=LeaseState(row["state"]),
            requests=list(row["requests"]),
            duration=row["duration"],
            max_duration=row["max_duration"],
            priority=row["priority"],
            created_at=row["created_at"],
            granted_at=row["granted_at"],
            ends_at=row["ends_at"],
            ended_at=row["ended_at"],
            reason=row["reason"],
            exporters=exporters,
            claimed_at=row.get("claimed_at"),
            hooks=list(row.get("hooks") or []),
        )

    @property
    def hooks_version(self) -> int:
        """Grows with every hook report (``GET /v1/leases/ID?hooks=N`` waits past it)."""
        return sum(int(run.get("updates", 0)) for run in self.hooks)

    def to_json(self, relay: str | None) -> dict[str, Any]:
        """The client-facing JSON lease object."""
        return {
            "id": self.id,
            "client": self.client,
            "state": self.state.value,
            "requests": self.requests,
            "duration": self.duration,
            "priority": self.priority,
            "position": self.position,
            "waiting": self.waiting,
            "exporters": self.exporters,
            "created_at": iso(self.created_at),
            "granted_at": iso(self.granted_at),
            "ends_at": iso(self.ends_at),
            "ended_at": iso(self.ended_at),
            "reason": self.reason,
            "relay": relay if self.state is LeaseState.READY else None,
            "hooks": [
                {
                    **run,
                    "started_at": iso(run.get("started_at")),
                    "updated_at": iso(run.get("updated_at")),
                }
                for run in self.hooks
            ],
            "hooks_version": self.hooks_version,
        }

    def to_exporter_json(self, relay: str | None) -> dict[str, Any]:
        """The exporter-facing JSON (one of its live leases)."""
        return {
            "id": self.id,
            "client": self.client,
            "state": self.state.value,
            "granted_at": iso(self.granted_at),
            "ends_at": iso(self.ends_at),
            "relay": relay,
        }


@dataclass(frozen=True, slots=True)
class ExporterRecord:
    """An exporter as listed to clients and admins."""

    name: str
    labels: dict[str, str]
    status: ExporterStatus
    lease: str | None
    last_seen: float | None
    agent: str | None = None
    holder: str | None = None
    maintenance: str | None = None
    health: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of ``GET /v1/exporters`` entries."""
        return {
            "name": self.name,
            "labels": self.labels,
            "status": self.status.value,
            "lease": self.lease,
            "holder": self.holder,
            "last_seen": iso(self.last_seen),
            "agent": self.agent,
            "maintenance": self.maintenance,
            "health": self.health,
        }


@dataclass(slots=True)
class Changes:
    """What a store operation changed, so waiters on those leases and exporters wake up."""

    leases: set[str] = field(default_factory=set)
    exporters: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.leases or self.exporters)

    def update(self, other: Changes) -> None:
        """Merge ``other`` in."""
        self.leases |= other.leases
        self.exporters |= other.exporters
