from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tether.driver import Driver, export

from ._interface import PowerInterface, PowerReading

__all__ = ["MockPower"]


class MockPower(PowerInterface, Driver):
    """A power switch in memory, for demos and tests.

    Config:
        voltage: the voltage ``read`` reports while on.
        current: the current ``read`` reports while on.
        samples: how many samples one ``read`` yields.
        interval: seconds between samples.
    """

    voltage: float = 5.0
    current: float = 0.5
    samples: int = 3
    interval: float = 0.0

    _powered: bool = False

    @export
    async def on(self) -> None:
        """Switch power on."""
        self._powered = True
        self.logger.info("power on")

    @export
    async def off(self) -> None:
        """Switch power off."""
        self._powered = False
        self.logger.info("power off")

    @export
    async def status(self) -> bool:
        """True when power is on."""
        return self._powered

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        """Stream ``samples`` readings, ``interval`` seconds apart."""
        for index in range(self.samples):
            if index and self.interval:
                await asyncio.sleep(self.interval)
            on = self._powered
            yield PowerReading(
                voltage=self.voltage if on else 0.0, current=self.current if on else 0.0
            )
