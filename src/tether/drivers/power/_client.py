from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

from tether.driver import DriverClient
from tether.errors import DriverError

from ._errors import POWER_ERRORS
from ._interface import PowerInterface, PowerReading

__all__ = ["PowerClient"]


class _PowerErrors:
    """Raise the exporter's power device errors as the same classes here.

    A class rather than ``@contextmanager``: it wraps every call, and entering a generator
    costs several times more.
    """

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not isinstance(exc, DriverError):
            return
        cls = POWER_ERRORS.get(exc.remote_type)
        if cls is None or isinstance(exc, cls):
            return
        raise cls(exc.message, **exc.details) from exc


_power_errors = _PowerErrors()


class PowerClient(DriverClient):
    """Client of :class:`PowerInterface`: ``on``, ``off``, ``cycle``, ``status``, ``read``."""

    interface = PowerInterface

    def on(self) -> None:
        """Switch power on."""
        with _power_errors:
            self.call("on")

    def off(self) -> None:
        """Switch power off."""
        with _power_errors:
            self.call("off")

    def cycle(self, wait: float = 2.0) -> None:
        """Power off, wait ``wait`` seconds, power on (the exporter times the wait)."""
        with _power_errors:
            self.call("cycle", wait)

    def status(self) -> bool:
        """True when power is on."""
        with _power_errors:
            return bool(self.call("status"))

    def read(self) -> Iterator[PowerReading]:
        """Yield power samples as the driver produces them.

        Raises:
            DriverNotImplemented: the driver has no way to measure.
        """
        yield from self.streaming_call("read")
