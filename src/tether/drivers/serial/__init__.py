"""Serial: a serial port (any pyserial URL) as a byte stream, with console helpers.

The driver :class:`PySerial` runs on the exporter; :class:`SerialClient` adds ``expect``,
``send``, ``sendline``, ``read_until``, a console log file and an interactive ``console``.
"""

from ._client import SerialClient
from ._console import Console
from ._driver import PySerial
from ._errors import ConsoleClosed, DeviceDisconnected, ExpectTimeout
from ._interface import SerialInterface, SerialSettings
from ._terminal import interactive

__all__ = [
    "Console",
    "ConsoleClosed",
    "DeviceDisconnected",
    "ExpectTimeout",
    "PySerial",
    "SerialClient",
    "SerialInterface",
    "SerialSettings",
    "interactive",
]
