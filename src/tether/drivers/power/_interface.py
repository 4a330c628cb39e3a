from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator

from pydantic import BaseModel

from tether.driver import Interface, export

__all__ = ["PowerInterface", "PowerReading"]


class PowerReading(BaseModel):
    """One power sample."""

    voltage: float
    current: float


class PowerInterface(Interface):
    """Switch a device's power.

    ``cycle`` is implemented here, on top of ``on`` and ``off``, so every power driver gets it:
    the wait happens on the exporter, so a slow or lost client cannot stretch it.
    """

    name = "tether.power"
    version = 1
    client = "tether.drivers.power.PowerClient"

    @abstractmethod
    async def on(self) -> None:
        """Switch power on."""

    @abstractmethod
    async def off(self) -> None:
        """Switch power off."""

    @abstractmethod
    async def status(self) -> bool:
        """True when power is on."""

    @abstractmethod
    def read(self) -> AsyncIterator[PowerReading]:
        """Stream voltage/current samples."""

    @export
    async def cycle(self, wait: float = 2.0) -> None:
        """Power off, wait ``wait`` seconds (on the exporter), power on."""
        if wait < 0:
            raise ValueError(f"cycle(): wait must not be negative (got {wait})")
        await self.off()
        await asyncio.sleep(wait)
        await self.on()
