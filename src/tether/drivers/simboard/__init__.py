"""SimBoard: a simulated board in Python, for demos and tests where QEMU cannot run.

It has the same children as the QEMU board (``power``, ``console``, ``disk``), a boot log, a
``login:`` prompt and a small shell, on a real pty read by the
:class:`~tether.drivers.serial.PySerial` driver.
"""

from ._driver import SimBoard, SimBoardError, SimConsole, SimDisk, SimPower
from ._firmware import BoardShell, ShellState

__all__ = [
    "BoardShell",
    "ShellState",
    "SimBoard",
    "SimBoardError",
    "SimConsole",
    "SimDisk",
    "SimPower",
]
