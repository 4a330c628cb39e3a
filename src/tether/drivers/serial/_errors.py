from __future__ import annotations

from tether.errors import TetherError

__all__ = ["ConsoleBusy", "ConsoleClosed", "ConsoleReadOnly", "DeviceDisconnected", "ExpectTimeout"]


class DeviceDisconnected(TetherError, ConnectionError):
    """The serial device went away (unplugged, powered off, pty closed) or cannot be opened.

    Raised by the driver; clients see it as a ``DriverError`` whose ``remote_type`` names it.
    """


class ExpectTimeout(TetherError, TimeoutError):
    """``expect`` / ``read_until`` did not see the pattern in time.

    Attributes:
        pattern: what was expected.
        tail: the last bytes received (what the device said instead).
    """

    def __init__(self, message: str, *, pattern: object, tail: bytes) -> None:
        super().__init__(message)
        self.pattern = pattern
        self.tail = tail


class ConsoleClosed(TetherError, ConnectionError):
    """The console stream ended (device gone, session closed) before the pattern was seen.

    Attributes:
        tail: the last bytes received.
    """

    def __init__(self, message: str, *, tail: bytes) -> None:
        super().__init__(message)
        self.tail = tail


class ConsoleBusy(TetherError, RuntimeError):
    """A second client tried to write to a console that has a writer (open it read-only)."""


class ConsoleReadOnly(TetherError, PermissionError):
    """A read-only console stream was written to."""
