"""Boot strategies: a board's states as a graph, and the steps that move it between them.

:class:`BootStrategy` composes the board's power, console, U-Boot, console shell and storage
nodes (all routed with ``uses:``) into ``transition(state)``; :class:`BootGraph` is the graph
as data.
"""

from ._client import BootStrategyClient
from ._driver import BootStepFailed, BootStrategy
from ._graph import UNKNOWN, BootGraph, Step, UnknownState
from ._interface import BootStrategyInterface

__all__ = [
    "UNKNOWN",
    "BootGraph",
    "BootStepFailed",
    "BootStrategy",
    "BootStrategyClient",
    "BootStrategyInterface",
    "Step",
    "UnknownState",
]
