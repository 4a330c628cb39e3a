from __future__ import annotations

from abc import abstractmethod

from tether.driver import Interface

from ._result import CommandResult

__all__ = ["ConsoleShellInterface"]


class ConsoleShellInterface(Interface):
    """A shell on a device's console: run a command, get its output and exit status."""

    name = "tether.console.shell"
    version = 1
    client = "tether.drivers.console.ConsoleShellClient"

    @abstractmethod
    async def run(self, command: str, timeout: float = 30) -> CommandResult:  # noqa: ASYNC109 (the timeout is part of the API)
        """Run one command line; its output (echo and prompt removed) and exit status.

        Raises ``TimeoutError`` (``DriverTimeout`` on a client) when it did not finish
        within ``timeout`` seconds; the command is interrupted and the shell usable again.
        """

    @abstractmethod
    async def wait_ready(
        self,
        timeout: float = 60,  # noqa: ASYNC109 (the timeout is part of the API)
        poke: bool = True,
    ) -> None:
        """Wait for the shell: find the prompt, logging in when the console asks.

        With ``poke`` a newline is sent when the console stays quiet (a prompt that went by
        before anyone listened); without, only what the console prints is awaited (right
        after power-on, where a key could stop a bootloader's countdown).

        Raises ``TimeoutError`` when no prompt came within ``timeout`` seconds.
        """
