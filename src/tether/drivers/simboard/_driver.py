"""The simulated board as drivers: a composite with power, console and disk children.

The console is the real thing: a pty pair is opened when the board starts, the board's
firmware runs on its master side and the ``console`` child is a
:class:`~tether.drivers.serial.PySerial` driver on its slave path (``/dev/pts/N``), so
everything between the client's ``expect`` and the board goes through the same code as a
USB serial adapter. The board keeps a slave fd of its own open, so the line never hangs up
between client streams (like a cable that stays plugged in).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from typing import Any

from tether.driver import Driver
from tether.drivers.power import BoardPower, PowerReading
from tether.drivers.serial import PySerial
from tether.drivers.storage import BoardDisk
from tether.errors import ConfigError, TetherError

from ._firmware import BoardShell, Firmware

__all__ = ["SimBoard", "SimBoardError", "SimConsole", "SimDisk", "SimPower"]


class SimBoardError(TetherError, RuntimeError):
    """The simulated board is not in a state for the request."""


class SimBoard(Driver):
    """A simulated board in Python: boot log, ``login:`` prompt and a small shell on a pty.

    For demos and tests where QEMU cannot run. Children: ``power`` (starts and stops the
    board's firmware), ``console`` (a :class:`~tether.drivers.serial.PySerial` on the pty),
    ``disk`` (a storage mux over an image file, as ``/dev/vda``; flash it while the board is
    off). Log in as any user, no password; ``help`` lists the commands.

    Config:
        hostname: shown in the prompts.
        boot_seconds: how long the boot log takes (0: at once).
        disk: the disk image file (default: a temporary file, removed at stop).
        disk_mib: the disk's size in MiB (a smaller file is grown, sparse).
    """

    hostname: str = "simboard"
    boot_seconds: float = 1.0
    disk: str = ""
    disk_mib: int = 64

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.pop("children", None):
            raise ConfigError("SimBoard makes its own children (power, console, disk)")
        super().__init__(**kwargs)
        if self.boot_seconds < 0:
            raise ConfigError(f"SimBoard.boot_seconds: {self.boot_seconds} is negative")
        self.power = SimPower()
        self.console = SimConsole()
        self.storage = SimDisk(path=self.disk, disk_mib=self.disk_mib)
        self.children = {"power": self.power, "console": self.console, "disk": self.storage}
        self.power._board = self
        self.console._board = self
        self.storage._board = self
        self.master: int | None = None
        self._slave: int | None = None
        self._firmware: Firmware | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        # The pty opens here, not in __init__: trees are also built only to be described.
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo or line editing by the kernel: the board does that
        os.set_blocking(master, False)
        self.master, self._slave = master, slave
        self.console.url = os.ttyname(slave)
        self.logger.info("simulated board console on %s", self.console.url)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def power_reading(self) -> PowerReading:
        """5 V and 0.35 A while the board runs, 0 V and 0 A when off."""
        return PowerReading(
            voltage=5.0 if self.running else 0.0, current=0.35 if self.running else 0.0
        )

    async def power_on(self) -> None:
        if self.running:
            return
        if self.master is None:
            raise SimBoardError("the simulated board is not started")
        if self.storage.mode == "host":
            await self.storage.dut()  # the board takes its disk, as a real mux would on boot
        disk = self.storage.path if self.storage.mode == "dut" else None
        shell = BoardShell(self.hostname, disk)
        self._firmware = Firmware(self.master, shell, self.boot_seconds)
        self._task = asyncio.create_task(self._firmware.run(), name="simboard-firmware")

    async def power_off(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def prepare_stop(self) -> None:
        await self.power_off()

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for fd in (self.master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self._slave = None


class _Child(Driver):
    _board: SimBoard | None = None  # set by SimBoard.__init__ (private: not a config field)

    @property
    def board(self) -> SimBoard:
        if self._board is None:
            raise SimBoardError(f"{type(self).__name__} works only as a child of a SimBoard")
        return self._board


class SimPower(BoardPower):
    """Starts (``on``) and stops (``off``) the simulated board's firmware (``poweroff`` in its
    shell turns it off too)."""


class SimConsole(PySerial, _Child):
    """The simulated board's serial console: :class:`PySerial` on the board's pty.

    The URL is set when the board starts (``/dev/pts/N``); open the console before powering
    on to see the boot log.
    """

    url: str = ""


class SimDisk(BoardDisk):
    """The simulated board's disk (its ``/dev/vda``) as a storage mux (:class:`BoardDisk`)."""
