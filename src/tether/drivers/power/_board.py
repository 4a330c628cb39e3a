"""``BoardPower``: the power switch of a composite board (QEMU, the simulated board).

The board owns the thing that runs (a QEMU process, simulated firmware); its ``power`` child
only forwards to it. The board sets the child's ``_board`` when it builds its children.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from tether.driver import Driver, export
from tether.errors import LifecycleError

from ._interface import PowerInterface, PowerReading

__all__ = ["BoardPower", "PoweredBoard"]


class PoweredBoard(Protocol):
    """What a board offers its power child."""

    @property
    def running(self) -> bool: ...

    async def power_on(self) -> None: ...

    async def power_off(self) -> None: ...

    def power_reading(self) -> PowerReading: ...


class BoardPower(PowerInterface, Driver):
    """Starts (``on``) and stops (``off``) what the owning board runs."""

    _board: PoweredBoard | None = None  # set by the board (private: not a config field)

    def _owner(self) -> PoweredBoard:
        if self._board is None:
            raise LifecycleError(f"{type(self).__name__} works only as a child of its board")
        return self._board

    @export
    async def on(self) -> None:
        """Power on (no-op when the board runs)."""
        await self._owner().power_on()

    @export
    async def off(self) -> None:
        """Power off."""
        await self._owner().power_off()

    @export
    async def status(self) -> bool:
        """True while the board runs."""
        return self._owner().running

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        """One sample of the board's nominal supply."""
        yield self._owner().power_reading()
