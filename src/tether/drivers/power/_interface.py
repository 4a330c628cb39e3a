from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator

from pydantic import BaseModel

from tether.driver import Interface

__all__ = ["PowerInterface", "PowerReading"]


class PowerReading(BaseModel):
    """One power sample."""

    voltage: float
    current: float


class PowerInterface(Interface):
    """Switch a device's power."""

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
