from __future__ import annotations

from abc import abstractmethod

from tether.driver import Interface

__all__ = ["BootStrategyInterface"]


class BootStrategyInterface(Interface):
    """Brings a board to a state (``off``, ``uboot``, ``shell``) from whatever state it is in."""

    name = "tether.strategy.boot"
    version = 1
    client = "tether.drivers.strategy.BootStrategyClient"

    @abstractmethod
    async def transition(self, state: str) -> None:
        """Reach ``state``: idempotent; a board stuck anywhere is power cycled.

        Raises ``ValueError`` for a state the board does not have, and a
        ``BootStepFailed`` naming the step that failed, with the console's last lines.
        """

    @abstractmethod
    async def state(self) -> str:
        """The state the board is in (looked at when nobody knows yet)."""

    @abstractmethod
    async def states(self) -> list[str]:
        """The states this board has."""
