"""Byte-stream adapters for ``export_stream`` methods.

An ``export_stream`` method yields an object with ``async send(data)``, ``async receive()``
(``b""`` at end of stream) and ``async send_eof()``. :class:`AsyncioStream` adapts an asyncio
``StreamReader``/``StreamWriter`` pair (a TCP or unix connection) to that shape.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["AsyncioStream"]

_CHUNK = 1 << 20


class AsyncioStream:
    """An asyncio connection as a tether byte stream."""

    #: ``send`` takes any buffer (a memoryview of a received frame), saving a copy.
    accepts_buffers = True

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive(self) -> bytes:
        return await self.reader.read(_CHUNK)

    async def send_eof(self) -> None:
        if self.writer.can_write_eof():
            self.writer.write_eof()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()
