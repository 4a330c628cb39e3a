from __future__ import annotations

from tether.driver import DriverClient
from tether.drivers.console import CommandResult

from ._interface import UBootInterface

__all__ = ["UBootClient"]


class UBootClient(DriverClient):
    """Client of :class:`UBootInterface`."""

    interface = UBootInterface

    def interrupt(self, timeout: float = 60) -> None:
        """Stop autoboot and get to the prompt."""
        self.call("interrupt", timeout)

    def run(self, command: str, timeout: float = 30) -> CommandResult:
        """Run a U-Boot command; a :class:`CommandResult` with its status (``$?``)."""
        result: CommandResult = self.call("run", command, timeout)
        return result

    def getenv(self, name: str) -> str | None:
        """An environment variable's value (None when not set)."""
        value: str | None = self.call("getenv", name)
        return value

    def setenv(self, name: str, value: str) -> None:
        """Set an environment variable."""
        self.call("setenv", name, value)

    def boot(self, timeout: float = 60, commands: list[str] | None = None) -> None:
        """Run the boot commands (default: the configured ones); returns when the kernel
        starts."""
        self.call("boot", timeout, commands)
