"""The lease queue, as pure functions: no I/O, no clock, no database.

Theory of operation. A lease request asks for one or more *slots*; a slot is a label selector
or an exporter name. It is granted when every slot gets a distinct exporter that matches it,
that the client's access policies allow, and that is available (online, not leased, not
running a hook); all slots at once or none.

:func:`schedule` walks the waiting requests in queue order (higher priority first, then first
come first served) over the pool of available exporters. A request that fits takes its
exporters out of the pool. A request that does not fit *reserves* every pooled exporter that
could serve any of its slots: later requests cannot take them. So a later request never takes
an exporter an earlier waiting request could use, and nobody starves behind a stream of
smaller requests (no backfilling; the price is that an exporter can stay idle while the head
of the queue waits for a second one).

Speed: a :class:`LabIndex` holds every exporter's labels and caches which exporters each
slot (with its policy limits) can use, as frozensets; pools are sets, so reserving and
matching are set operations. The index lives as long as the labels do (the store rebuilds it
when an exporter is added, relabelled or deleted). Identical waiting requests fail together:
once one request shape did not fit, later ones of the same shape are not tried again in that
pass (the pool only shrinks). A pass over 5,000 exporters and 500 waiters takes milliseconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from typing import TypeVar

from ._selector import Selector

__all__ = [
    "OPEN_MAX_DURATION",
    "Grant",
    "LabIndex",
    "Policy",
    "PolicyDecision",
    "RequestView",
    "Slot",
    "assign",
    "decide_policy",
    "queue_order",
    "schedule",
    "unsatisfiable_reason",
]

#: Without any policy, every client may lease every exporter at priority 0 for this long.
OPEN_MAX_DURATION = 8 * 3600.0

_CACHE_LIMIT = 20_000
_NO_LABELS: Mapping[str, str] = {}
_K = TypeVar("_K")


@dataclass(frozen=True, slots=True)
class Slot:
    """One exporter wanted by a request: by selector, or by name (exactly one is set)."""

    selector: Selector | None = None
    exporter: str | None = None

    def matches(self, name: str, labels: Mapping[str, str]) -> bool:
        """True when the exporter ``name`` with ``labels`` fits this slot (policies aside)."""
        if self.exporter is not None:
            return name == self.exporter
        return self.selector is None or self.selector.matches(labels)

    def __str__(self) -> str:
        return f"exporter {self.exporter}" if self.exporter else f"selector '{self.selector}'"


class _Shape:
    """What a request asks for (slots and limits), hashed once: the key of the failure cache."""

    __slots__ = ("_hash", "allowed", "slots")

    def __init__(self, slots: tuple[Slot, ...], allowed: tuple[Selector, ...] | None) -> None:
        self.slots = slots
        self.allowed = allowed
        self._hash = hash((slots, allowed))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Shape):
            return False
        if self.slots is other.slots and self.allowed is other.allowed:
            return True
        return (
            self._hash == other._hash
            and self.slots == other.slots
            and self.allowed == other.allowed
        )


@dataclass(frozen=True, slots=True)
class RequestView:
    """A waiting lease request. ``allowed`` limits exporters (None: any exporter)."""

    id: str
    priority: int
    seq: int
    slots: tuple[Slot, ...]
    allowed: tuple[Selector, ...] | None = None
    shape: _Shape = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _Shape(self.slots, self.allowed))


@dataclass(frozen=True, slots=True)
class Grant:
    """``exporters[i]`` serves ``slots[i]`` of request ``request_id``."""

    request_id: str
    exporters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Policy:
    """Clients (names, ``*`` for all) may lease exporters matching ``selector``."""

    name: str
    clients: tuple[str, ...]
    selector: Selector
    priority: int = 0
    max_duration: float = OPEN_MAX_DURATION

    def covers(self, client: str) -> bool:
        """True when the policy applies to ``client``."""
        return "*" in self.clients or client in self.clients


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """What the policies say about one request."""

    allowed: tuple[Selector, ...] | None
    priority: int
    max_duration: float
    policies: tuple[str, ...] = field(default=())


class LabIndex:
    """Every exporter's labels, with cached answers to "who can serve this slot?".

    Args:
        labels: exporter name → labels (its own and the admin's): what lease selectors match.
            Treated as immutable: make a new index when they change.
        trusted: exporter name → the labels the admin gave it: the only ones access policies
            match (an exporter cannot widen a policy by reporting a label). Default: ``labels``.
    """

    def __init__(
        self,
        labels: Mapping[str, Mapping[str, str]],
        trusted: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.labels = labels
        self.trusted = labels if trusted is None else trusted
        self.names = frozenset(labels)
        self._selected: dict[Selector, frozenset[str]] = {}
        self._permitted: dict[Selector, frozenset[str]] = {}
        self._slots: dict[tuple[Slot, tuple[Selector, ...] | None], frozenset[str]] = {}
        self.hopeless: dict[_Shape, str | None] = {}

    def selected(self, selector: Selector) -> frozenset[str]:
        """Names of the exporters ``selector`` matches."""
        hit = self._selected.get(selector)
        if hit is None:
            hit = frozenset(n for n, labels in self.labels.items() if selector.matches(labels))
            self._remember(self._selected, selector, hit)
        return hit

    def permitted(self, selector: Selector) -> frozenset[str]:
        """Names of the exporters whose admin-given labels match ``selector`` (a policy's)."""
        hit = self._permitted.get(selector)
        if hit is None:
            hit = frozenset(
                n for n in self.names if selector.matches(self.trusted.get(n, _NO_LABELS))
            )
            self._remember(self._permitted, selector, hit)
        return hit

    def candidates(self, slot: Slot, allowed: tuple[Selector, ...] | None = None) -> frozenset[str]:
        """Names of the exporters that may serve ``slot`` under the ``allowed`` limits."""
        key = (slot, allowed)
        hit = self._slots.get(key)
        if hit is None:
            if slot.exporter is not None:
                hit = frozenset({slot.exporter}) & self.names
            elif slot.selector is None:
                hit = self.names
            else:
                hit = self.selected(slot.selector)
            if allowed is not None:
                permitted: frozenset[str] = frozenset().union(*map(self.permitted, allowed))
                hit &= permitted
            self._remember(self._slots, key, hit)
        return hit

    def _remember(self, cache: dict[_K, frozenset[str]], key: _K, value: frozenset[str]) -> None:
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        cache[key] = value


def queue_order(requests: Iterable[RequestView]) -> list[RequestView]:
    """Requests in queue order: higher priority first, then lower ``seq`` (arrival) first."""
    return sorted(requests, key=lambda r: (-r.priority, r.seq))


def assign(request: RequestView, index: LabIndex, pool: Set[str]) -> tuple[str, ...] | None:
    """Give every slot of ``request`` a distinct exporter from ``pool``, or None if impossible.

    A bipartite matching by augmenting paths; slots are few, and each looks only at its own
    candidates that are in the pool (sorted, so the outcome is reproducible).
    """
    options: list[list[str]] = []
    for slot in request.slots:
        names = index.candidates(slot, request.allowed) & pool
        if not names:
            return None
        options.append(sorted(names) if len(names) <= 256 else list(names))
    owner: dict[str, int] = {}

    def place(slot: int, seen: set[str]) -> bool:
        for name in options[slot]:
            if name in seen:
                continue
            seen.add(name)
            if name not in owner or place(owner[name], seen):
                owner[name] = slot
                return True
        return False

    # Most constrained slots first keeps the search short.
    for first in sorted(range(len(options)), key=lambda i: len(options[i])):
        if not place(first, set()):
            return None
    chosen = {slot: name for name, slot in owner.items()}
    return tuple(chosen[i] for i in range(len(options)))


def schedule(
    pending: Iterable[RequestView], index: LabIndex, unavailable: Set[str] = frozenset()
) -> tuple[list[Grant], dict[str, int]]:
    """Decide which waiting requests are granted now.

    Args:
        pending: waiting requests, any order.
        index: every known exporter.
        unavailable: exporters that may not be handed out now (leased, offline, in a hook).

    Returns:
        The grants, in queue order, and the 1-based queue position of every request that
        stays waiting.
    """
    pool = set(index.names)
    pool -= unavailable
    grants: list[Grant] = []
    positions: dict[str, int] = {}
    # The pool only shrinks during a pass, so a request shape that failed fails again: this
    # keeps a long queue of identical requests at one matching attempt per pass.
    failed: set[_Shape] = set()
    for request in queue_order(pending):
        shape = request.shape
        chosen = None
        if pool and shape not in failed:
            chosen = assign(request, index, pool)
        if chosen is not None:
            grants.append(Grant(request.id, chosen))
            pool.difference_update(chosen)
            continue
        positions[request.id] = len(positions) + 1
        if shape in failed:
            continue
        failed.add(shape)
        for slot in request.slots:
            pool -= index.candidates(slot, request.allowed)
    return grants, positions


def unsatisfiable_reason(request: RequestView, index: LabIndex) -> str | None:
    """Why ``request`` could never be granted, even with every exporter free; None if it can.

    Offline and busy exporters count: they may come back or be released. Cached per request
    shape in the index.
    """
    key = request.shape
    if key in index.hopeless:
        return index.hopeless[key]
    reason = None
    for slot in request.slots:
        if not index.candidates(slot, request.allowed):
            if request.allowed is not None and index.candidates(slot):
                reason = f"{slot}: no access policy lets this client lease a matching exporter"
            else:
                reason = f"no exporter matches {slot}"
            break
    if reason is None and assign(request, index, index.names) is None:
        reason = (
            f"the request wants {len(request.slots)} distinct exporters but fewer than that "
            "match its selectors together"
        )
    if len(index.hopeless) > _CACHE_LIMIT:
        index.hopeless.clear()
    index.hopeless[key] = reason
    return reason


def decide_policy(
    client: str, policies: Sequence[Policy], slots: Sequence[Slot], index: LabIndex
) -> PolicyDecision | None:
    """Apply access policies to a request.

    No policies at all means an open lab: everything allowed, priority 0, at most
    :data:`OPEN_MAX_DURATION`. Otherwise the client's policies (those naming it or ``*``)
    limit the exporters it may get; priority and maximum duration are the highest among the
    client's policies that allow an exporter matching one of the slots (or among all the
    client's policies when none does). None: no policy covers the client at all.
    """
    if not policies:
        return PolicyDecision(None, 0, OPEN_MAX_DURATION)
    mine = [p for p in policies if p.covers(client)]
    if not mine:
        return None
    wanted: frozenset[str] = frozenset().union(*(index.candidates(s) for s in slots))
    relevant = [p for p in mine if wanted & index.permitted(p.selector)] or mine
    return PolicyDecision(
        allowed=tuple(p.selector for p in mine),
        priority=max(p.priority for p in relevant),
        max_duration=max(p.max_duration for p in relevant),
        policies=tuple(p.name for p in relevant),
    )
