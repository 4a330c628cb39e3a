from __future__ import annotations

from collections.abc import Iterator

from tether.driver import DriverClient

from ._interface import PowerInterface, PowerReading

__all__ = ["PowerClient"]


class PowerClient(DriverClient):
    """Client of :class:`PowerInterface`: ``on``, ``off``, ``cycle``, ``status``, ``read``."""

    interface = PowerInterface

    def on(self) -> None:
        """Switch power on."""
        self.call("on")

    def off(self) -> None:
        """Switch power off."""
        self.call("off")

    def cycle(self, wait: float = 2.0) -> None:
        """Power off, wait ``wait`` seconds, power on (the exporter times the wait)."""
        self.call("cycle", wait)

    def status(self) -> bool:
        """True when power is on."""
        return bool(self.call("status"))

    def read(self) -> Iterator[PowerReading]:
        """Yield power samples as the driver produces them.

        Raises:
            DriverNotImplemented: the driver has no way to measure.
        """
        yield from self.streaming_call("read")
