from __future__ import annotations

from tether.driver import DriverClient

from ._interface import BootStrategyInterface

__all__ = ["BootStrategyClient"]


class BootStrategyClient(DriverClient):
    """Client of :class:`BootStrategyInterface`: ``transition``, ``state``, ``states``."""

    interface = BootStrategyInterface

    def transition(self, state: str) -> None:
        """Bring the board to ``state`` (``off``, ``uboot``, ``shell``)."""
        self.call("transition", state)

    def state(self) -> str:
        """The board's state."""
        return str(self.call("state"))

    def states(self) -> list[str]:
        """The states the board has."""
        return list(self.call("states"))
