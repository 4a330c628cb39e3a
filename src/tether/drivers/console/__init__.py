"""Drivers that work a device's console: a shell on it, and what a command there returns.

:class:`ConsoleShell` runs commands on a shell over any console node (``uses: {console:
NODE}``); :class:`CommandMachine` is its sans-IO core (bytes in, events out), which
:mod:`tether.drivers.uboot` shares; :class:`ConsoleLink` is the one console stream the
drivers of a session share.
"""

from ._client import ConsoleShellClient
from ._expect import run_marked, wait_for
from ._interface import ConsoleShellInterface
from ._link import ConsoleClosedError, ConsoleLink, ConsoleOperation
from ._machine import (
    TRANSITIONS,
    CommandFinished,
    CommandMachine,
    CommandStarted,
    ConsoleTail,
    Event,
    MachineState,
    OutputTooLong,
    PromptFound,
    ShellProtocolError,
    clean_line,
    strip_ansi,
)
from ._result import CommandResult
from ._shell import ConsoleShell

__all__ = [
    "TRANSITIONS",
    "CommandFinished",
    "CommandMachine",
    "CommandResult",
    "CommandStarted",
    "ConsoleClosedError",
    "ConsoleLink",
    "ConsoleOperation",
    "ConsoleShell",
    "ConsoleShellClient",
    "ConsoleShellInterface",
    "ConsoleTail",
    "Event",
    "MachineState",
    "OutputTooLong",
    "PromptFound",
    "ShellProtocolError",
    "clean_line",
    "run_marked",
    "strip_ansi",
    "wait_for",
]
