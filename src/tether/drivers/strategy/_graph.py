"""A board's boot states as data: the states, the steps between them, the way from any state
to any other. No I/O: the driver runs the steps.

The graph is a table of edges ``(from, to) -> step``. ``unknown`` (a board nobody has looked
at, or one a step left half-way) has one way out: power off, from where every state is
reachable; so a board stuck anywhere is power cycled, and one found at the state asked for
is left alone.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["UNKNOWN", "BootGraph", "Step", "UnknownState"]

#: The state of a board nobody has looked at yet, or that a failed step left behind.
UNKNOWN = "unknown"


class UnknownState(ValueError):
    """A state the graph does not have (the message lists the ones it has)."""


@dataclass(frozen=True, slots=True)
class Step:
    """One edge: ``name`` says what it does (errors name it)."""

    name: str
    source: str
    target: str


class BootGraph:
    """The states and steps of one board.

    Args:
        steps: the edges. ``"*"`` as a source means every state (power off).
    """

    def __init__(self, steps: list[Step]) -> None:
        self.steps = list(steps)
        states: list[str] = []
        for step in steps:
            for state in (step.source, step.target):
                if state != "*" and state not in states:
                    states.append(state)
        self.states = states

    @classmethod
    def for_board(cls, *, has_uboot: bool) -> BootGraph:
        """``off``, ``uboot`` (when the board has U-Boot) and ``shell``."""
        steps = [Step("power off", "*", "off")]
        if has_uboot:
            steps += [
                Step("power on and stop U-Boot's autoboot", "off", "uboot"),
                Step("boot from U-Boot to the shell", "uboot", "shell"),
            ]
        else:
            steps.append(Step("power on and wait for the shell", "off", "shell"))
        return cls(steps)

    def check(self, state: str) -> None:
        """Raise :class:`UnknownState` unless the graph has ``state``."""
        if state not in self.states:
            raise UnknownState(f"no state {state!r}; the states are: {', '.join(self.states)}")

    def path(self, source: str, target: str) -> list[Step]:
        """The fewest steps from ``source`` (``unknown`` included) to ``target``."""
        self.check(target)
        if source == target:
            return []
        seen = {source}
        queue: deque[tuple[str, list[Step]]] = deque([(source, [])])
        while queue:
            state, path = queue.popleft()
            for step in self.steps:
                if step.source not in ("*", state) or step.target in seen:
                    continue
                way = [*path, step]
                if step.target == target:
                    return way
                seen.add(step.target)
                queue.append((step.target, way))
        raise UnknownState(f"no way from {source!r} to {target!r}")  # pragma: no cover
