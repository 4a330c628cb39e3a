"""The plumbing the test consoles share: every open stream gets every byte, through a queue.

A subclass says where the bytes a stream sends go (``write``) and where the queues of the
open streams live (``listeners``: its own list, or a fake board's); it hands output to the
streams by putting it on those queues. It keeps no log, as a console on a bare pty has none.
"""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import ClassVar

from tether import Driver, export, export_stream
from tether.drivers.serial import SerialInterface, SerialSettings


class QueueStream:
    """One open console stream: reads its own queue, writes through the console."""

    def __init__(self, console: QueueConsole, queue: asyncio.Queue[bytes]) -> None:
        self._console = console
        self._queue = queue

    async def receive(self) -> bytes:
        return await self._queue.get()

    async def send(self, data: bytes) -> None:
        self._console.write(data)

    async def send_eof(self) -> None:
        pass


class QueueConsole(SerialInterface, Driver, abstract=True):
    """A console whose output reaches every open stream's queue (see the module docstring)."""

    url: ClassVar[str] = "test"

    @abstractmethod
    def listeners(self) -> list[asyncio.Queue[bytes]]:
        """The queues of the open streams, one each; output goes to all of them."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Take the bytes a stream sends."""

    @export_stream
    @asynccontextmanager
    async def connect(self, read_only: bool = False) -> AsyncIterator[QueueStream]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.listeners().append(queue)
        try:
            yield QueueStream(self, queue)
        finally:
            self.listeners().remove(queue)

    @export
    async def log(self, since: int = 0, limit: int | None = None) -> bytes:
        return b""

    @export
    async def log_size(self) -> int:
        return 0

    @export
    async def settings(self) -> SerialSettings:
        return SerialSettings(
            url=self.url,
            baudrate=115200,
            bytesize=8,
            parity="N",
            stopbits=1,
            xonxoff=False,
            rtscts=False,
            dsrdtr=False,
        )
