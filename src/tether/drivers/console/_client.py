from __future__ import annotations

from tether.driver import DriverClient

from ._interface import ConsoleShellInterface
from ._result import CommandResult

__all__ = ["ConsoleShellClient"]


class ConsoleShellClient(DriverClient):
    """Client of :class:`ConsoleShellInterface`: ``run`` and ``wait_ready``."""

    interface = ConsoleShellInterface

    def run(self, command: str, timeout: float = 30) -> CommandResult:
        """Run ``command`` on the device's shell; a :class:`CommandResult`.

        Raises:
            DriverTimeout: it did not finish within ``timeout`` seconds (it was
                interrupted; the shell takes the next command).
        """
        result: CommandResult = self.call("run", command, timeout)
        return result

    def wait_ready(self, timeout: float = 60, poke: bool = True) -> None:
        """Wait until the shell takes commands (logging in when asked)."""
        self.call("wait_ready", timeout, poke)
