from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tether.driver import AsyncioStream, Driver, export, export_stream

from ._interface import NetworkInterface

__all__ = ["TcpNetwork", "UnixNetwork"]

_LIMIT = 1 << 20


class TcpNetwork(NetworkInterface, Driver):
    """Connects to ``host:port`` over TCP for each stream a client opens.

    Config:
        host: the endpoint's host name or address, as seen from the exporter.
        port: the endpoint's TCP port.
    """

    host: str
    port: int

    @export_stream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncioStream]:
        """Open a TCP connection to the endpoint."""
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=_LIMIT)
        stream = AsyncioStream(reader, writer)
        try:
            yield stream
        finally:
            await stream.aclose()

    @export
    async def address(self) -> str:
        """The endpoint as ``host:port``."""
        return f"{self.host}:{self.port}"


class UnixNetwork(NetworkInterface, Driver):
    """Connects to a unix socket for each stream a client opens.

    Config:
        path: the socket's path on the exporter host.
    """

    path: str

    @export_stream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncioStream]:
        """Open a connection to the unix socket."""
        reader, writer = await asyncio.open_unix_connection(self.path, limit=_LIMIT)
        stream = AsyncioStream(reader, writer)
        try:
            yield stream
        finally:
            await stream.aclose()

    @export
    async def address(self) -> str:
        """The socket path."""
        return self.path
