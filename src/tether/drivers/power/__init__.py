"""Power: switch a device on and off, read voltage and current."""

from ._client import PowerClient
from ._driver import MockPower
from ._interface import PowerInterface, PowerReading

__all__ = ["MockPower", "PowerClient", "PowerInterface", "PowerReading"]
