"""A fake board for boot-strategy unit tests: fake power and a fake console in virtual time.

``FakeBoard`` plays a U-Boot board: at power-on it prints a banner and an autoboot
countdown, stops at ``=> `` when a key comes in time, else boots; ``boot`` starts a
"kernel" that reaches a ``# `` prompt after a few (virtual) seconds. Both prompts answer the
marker commands the console shell and U-Boot drivers send (``true``, ``false``,
``echo ...``). ``stuck`` makes it print nothing and ignore input until powered off.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

from _queue_console import QueueConsole

from tether import Driver, export
from tether.drivers.power import PowerInterface, PowerReading

_MARKED = re.compile(r"^echo '@S''(\w+)'; (.*); echo '@E''(\w+)' \$\?$")


class FakeBoard:
    """The board both fakes share (see the module docstring)."""

    def __init__(self) -> None:
        self.powered = False
        self.mode = "off"  # off, countdown, uboot, kernel, linux
        self.stuck = False
        self.ignore_keys = False
        self.power_ons = 0
        self.interrupted = 0
        self.commands: list[str] = []
        self.queues: list[asyncio.Queue[bytes]] = []
        self._line = bytearray()
        self._task: asyncio.Task[None] | None = None

    def print(self, text: str) -> None:
        for queue in self.queues:
            queue.put_nowait(text.encode())

    def power_on(self) -> None:
        if self.powered:
            return
        self.powered = True
        self.power_ons += 1
        self.mode = "countdown"
        self._task = asyncio.get_running_loop().create_task(self._boot_rom())

    def power_off(self) -> None:
        self.powered = False
        self.stuck = False
        self.mode = "off"
        if self._task is not None:
            self._task.cancel()

    async def _boot_rom(self) -> None:
        self.print("\r\nU-Boot 2026.01 (fake)\r\n\r\nDRAM:  256 MiB\r\n")
        await asyncio.sleep(0.5)
        self.print("Hit any key to stop autoboot:  2 ")
        await asyncio.sleep(2)
        if self.mode == "countdown":
            self.print("\r\n")
            self._start_kernel()

    def _start_kernel(self) -> None:
        self.mode = "kernel"
        self.print("Starting kernel ...\r\n\r\n")
        self._task = asyncio.get_running_loop().create_task(self._kernel())

    async def _kernel(self) -> None:
        await asyncio.sleep(3)
        self.print("[    0.000000] Linux version 6.1 (fake)\r\n")
        await asyncio.sleep(1)
        self.mode = "linux"
        self.print("\r\nfake-board# ")

    def prompt(self) -> str:
        return "=> " if self.mode == "uboot" else "fake-board# "

    def receive(self, data: bytes) -> None:
        if not self.powered or self.stuck:
            return
        if self.mode == "countdown" and not self.ignore_keys:
            self.mode = "uboot"
            self.interrupted += 1
            self.print("\b\b\b 0 \r\n=> ")
            return
        if self.mode not in ("uboot", "linux"):
            return
        for byte in data:
            if byte == 3:
                self._line.clear()
                self.print("^C\r\n" + self.prompt())
            elif byte == ord("\n"):
                line = self._line.decode()
                self._line.clear()
                self.print(line + "\r\n")  # the terminal's echo
                self._command(line)
            else:
                self._line.append(byte)

    def _command(self, line: str) -> None:
        marked = _MARKED.match(line)
        body = marked.group(2) if marked else line
        self.commands.append(body)
        if marked:
            self.print(f"@S{marked.group(1)}\r\n")
        if body == "boot" and self.mode == "uboot":
            self._start_kernel()
            return
        if body == "hang":
            return
        status = 1 if body == "false" else 0
        if body.startswith("echo "):
            self.print(body[5:] + "\r\n")
        if marked:
            self.print(f"@E{marked.group(1)} {status}\r\n")
        self.print(self.prompt())


class FakePower(PowerInterface, Driver):
    """Fake power switch of a :class:`FakeBoard`."""

    def __init__(self, board: FakeBoard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._board = board

    @export
    async def on(self) -> None:
        self._board.power_on()

    @export
    async def off(self) -> None:
        self._board.power_off()

    @export
    async def status(self) -> bool:
        return self._board.powered

    @export
    async def cycle(self, wait: float = 2.0) -> None:
        self._board.power_off()
        await asyncio.sleep(wait)
        self._board.power_on()

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        yield PowerReading(voltage=5.0 if self._board.powered else 0.0, current=0.0)


class FakeConsole(QueueConsole):
    """Fake console of a :class:`FakeBoard`."""

    url = "fake"

    def __init__(self, board: FakeBoard, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._board = board

    def listeners(self) -> list[asyncio.Queue[bytes]]:
        return self._board.queues

    def write(self, data: bytes) -> None:
        self._board.receive(data)
