"""U-Boot: the bootloader on a device's console (``uses: {console: NODE}``).

:class:`UBoot` stops the autoboot countdown, runs commands with their status (``$?``),
reads and sets the environment and boots with configurable commands (``tftpboot``,
``zboot``, ...). It shares the console shell's sans-IO machine
(:class:`tether.drivers.console.CommandMachine`).
"""

from ._client import UBootClient
from ._driver import UBoot
from ._interface import UBootInterface

__all__ = ["UBoot", "UBootClient", "UBootInterface"]
