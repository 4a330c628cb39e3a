from __future__ import annotations

from abc import abstractmethod

from tether.driver import Interface
from tether.drivers.console import CommandResult

__all__ = ["UBootInterface"]


class UBootInterface(Interface):
    """A U-Boot bootloader on a device's console."""

    name = "tether.uboot"
    version = 1
    client = "tether.drivers.uboot.UBootClient"

    @abstractmethod
    async def interrupt(self, timeout: float = 60) -> None:  # noqa: ASYNC109 (API)
        """Stop the autoboot countdown (or find the prompt U-Boot shows already).

        Raises ``TimeoutError`` when neither came within ``timeout`` seconds.
        """

    @abstractmethod
    async def run(self, command: str, timeout: float = 30) -> CommandResult:  # noqa: ASYNC109 (API)
        """Run a command at the U-Boot prompt; its output and status (``$?``)."""

    @abstractmethod
    async def getenv(self, name: str) -> str | None:
        """The value of environment variable ``name``; None when it is not set."""

    @abstractmethod
    async def setenv(self, name: str, value: str) -> None:
        """Set environment variable ``name`` (for this boot; ``saveenv`` keeps it)."""

    @abstractmethod
    async def boot(
        self,
        timeout: float = 60,  # noqa: ASYNC109 (API)
        commands: list[str] | None = None,
    ) -> None:
        """Run the boot commands (``commands``, else the configured ones); returns once
        U-Boot hands over to the kernel.

        Raises ``RuntimeError`` naming the command that failed (with its output), or
        ``TimeoutError`` when the hand-over was not seen within ``timeout`` seconds.
        """
