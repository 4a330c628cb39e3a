from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractAsyncContextManager
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel

from tether.driver import Interface

__all__ = ["SerialInterface", "SerialSettings", "StopBits"]


def _stopbits(value: float) -> float:
    if value not in (1, 1.5, 2):
        raise ValueError(f"expected 1, 1.5 or 2 (got {value})")
    return value


#: 1, 1.5 or 2 stop bits.
StopBits = Annotated[float, AfterValidator(_stopbits)]


class SerialSettings(BaseModel):
    """A serial port's line settings (what ``settings()`` reports)."""

    url: str
    baudrate: int
    bytesize: Literal[5, 6, 7, 8]
    parity: Literal["N", "E", "O", "M", "S"]
    stopbits: StopBits
    xonxoff: bool
    rtscts: bool
    dsrdtr: bool


class SerialInterface(Interface):
    """A serial port as a byte stream (a DUT's console)."""

    name = "tether.serial"
    version = 1
    client = "tether.drivers.serial.SerialClient"

    @abstractmethod
    def connect(self, read_only: bool = False) -> AbstractAsyncContextManager[Any]:
        """Open the port; a byte stream of what the device sends and receives.

        Shared: any number of streams, one writer (``read_only`` streams never write).
        """

    async def log(self, since: int = 0, limit: int | None = None) -> bytes:
        """What the console printed this session from byte offset ``since`` (bounded,
        rotated: the oldest bytes may be gone). Consoles built on ``ConsoleFanout`` keep
        one; a console that keeps none answers ``b""``."""
        return b""

    async def log_size(self) -> int:
        """Bytes the console printed this session (0 for a console that keeps no log)."""
        return 0

    @abstractmethod
    async def settings(self) -> SerialSettings:
        """The port's configured line settings."""
