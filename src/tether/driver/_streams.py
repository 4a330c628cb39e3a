"""Byte-stream adapters for ``export_stream`` methods.

An ``export_stream`` method yields an object with ``async send(data)``, ``async receive()``
(``b""`` at end of stream) and ``async send_eof()``. :class:`AsyncioStream` adapts an asyncio
``StreamReader``/``StreamWriter`` pair (a TCP or unix connection) to that shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

__all__ = ["AsyncioStream"]

_CHUNK = 1 << 20


class AsyncioStream:
    """An asyncio connection as a tether byte stream; ``async with`` closes it at the end."""

    #: ``send`` takes any buffer (a memoryview of a received frame), saving a copy.
    accepts_buffers = True

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        # A plain stream socket (no TLS layer in the transport) can be written directly.
        sock = writer.get_extra_info("socket")
        self._fd = -1
        if (
            sock is not None
            and sock.type == socket.SOCK_STREAM
            and writer.get_extra_info("ssl_object") is None
        ):
            self._fd = sock.fileno()

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def send_now(self, chunks: list[bytes | bytearray | memoryview]) -> bool:
        """Write ``chunks`` without waiting, if the connection allows it now: True when done.

        Only when nothing is queued in the transport (so order is kept): the bytes go to the
        socket in one system call, and what the socket did not take is copied into the
        transport's buffer, so the chunks may be views of a buffer the caller reuses at once.
        False (nothing written) when the transport has a backlog or is closing, or the socket
        failed: the caller then uses ``send``, which waits and reports the error.
        """
        transport = self.writer.transport
        if self._fd < 0 or transport.is_closing() or transport.get_write_buffer_size():
            return False
        try:
            sent = os.writev(self._fd, chunks)
        except BlockingIOError:
            sent = 0
        except OSError:
            return False
        for chunk in chunks:
            size = len(chunk)
            if sent >= size:
                sent -= size
                continue
            transport.write(bytes(memoryview(chunk)[sent:]))
            sent = 0
        return True

    async def receive(self) -> bytes:
        return await self.reader.read(_CHUNK)

    async def send_eof(self) -> None:
        if self.writer.can_write_eof():
            self.writer.write_eof()

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()

    async def __aenter__(self) -> AsyncioStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
