"""Serial: a serial port (any pyserial URL) as a byte stream, with console helpers.

The driver :class:`PySerial` runs on the exporter; :class:`SerialClient` adds ``expect``,
``send``, ``sendline``, ``read_until``, a console log file and an interactive ``console``.
"""

from ._client import SerialClient
from ._console import Console
from ._driver import PySerial
from ._errors import ConsoleBusy, ConsoleClosed, ConsoleReadOnly, DeviceDisconnected, ExpectTimeout
from ._fanout import ConsoleFanout, ConsoleLog, ConsoleReader
from ._interface import SerialInterface, SerialSettings
from ._terminal import interactive

__all__ = [
    "Console",
    "ConsoleBusy",
    "ConsoleClosed",
    "ConsoleFanout",
    "ConsoleLog",
    "ConsoleReadOnly",
    "ConsoleReader",
    "DeviceDisconnected",
    "ExpectTimeout",
    "PySerial",
    "SerialClient",
    "SerialInterface",
    "SerialSettings",
    "interactive",
]
