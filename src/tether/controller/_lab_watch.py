"""What changed in the lab, for one open dashboard page's live stream.

The controller notes every change it wakes long-polls for (its own, and on PostgreSQL the
other replicas' ``NOTIFY`` payloads) in each open :class:`LabWatch`: the lease ids and exporter
names, or "everything" when it cannot say (the change feed was lost and re-joined, an admin
changed identities). The stream takes what gathered, renders just those rows, and waits for
more. A watch holds at most :data:`MAX_KEYS` names: past that it says "everything" instead
(the page then fetches its whole body once), so a slow page cannot grow the process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["MAX_KEYS", "LabChange", "LabWatch"]

#: Names a watch collects before it gives up and reports "everything".
MAX_KEYS = 500


@dataclass(frozen=True, slots=True)
class LabChange:
    """The leases and exporters that changed, or ``everything`` (then the sets are empty)."""

    leases: frozenset[str] = field(default_factory=frozenset)
    exporters: frozenset[str] = field(default_factory=frozenset)
    everything: bool = False


class LabWatch:
    """Changes gathered for one reader; :attr:`changed` is set while any wait."""

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self._leases: set[str] = set()
        self._exporters: set[str] = set()
        self._everything = False

    def note(self, keys: Iterable[str]) -> None:
        """Note change keys as the controller wakes them (``l:LEASE``, ``e:EXPORTER``)."""
        self.changed.set()
        if self._everything:
            return
        for key in keys:
            kind, _, name = key.partition(":")
            (self._leases if kind == "l" else self._exporters).add(name)
        if len(self._leases) + len(self._exporters) > MAX_KEYS:
            self.note_everything()

    def note_everything(self) -> None:
        """Anything may have changed: the reader must read it all again."""
        self._everything = True
        self._leases.clear()
        self._exporters.clear()
        self.changed.set()

    def take(self) -> LabChange:
        """What gathered since the last take; the watch starts empty again."""
        change = LabChange(frozenset(self._leases), frozenset(self._exporters), self._everything)
        self._leases.clear()
        self._exporters.clear()
        self._everything = False
        self.changed.clear()
        return change
