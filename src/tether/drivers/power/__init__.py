"""Power: switch a device on and off, cycle it, read voltage and current.

Drivers: :class:`MockPower` (in memory), :class:`CommandPower` (shell commands),
:class:`HttpPower` (REST-controlled sockets and PDUs).
"""

from ._board import BoardPower, PoweredBoard
from ._client import PowerClient
from ._command import CommandPower
from ._driver import MockPower
from ._http import HttpAction, HttpPower, HttpReadAction, HttpStatusAction
from ._interface import PowerInterface, PowerReading

__all__ = [
    "BoardPower",
    "CommandPower",
    "HttpAction",
    "HttpPower",
    "HttpReadAction",
    "HttpStatusAction",
    "MockPower",
    "PowerClient",
    "PowerInterface",
    "PowerReading",
    "PoweredBoard",
]
