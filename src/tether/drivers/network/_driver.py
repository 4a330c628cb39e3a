from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TypeVar

from tether.driver import AsyncioStream, Driver, export, export_stream

from ._datagram import UdpProtocol, UdpStream
from ._interface import DatagramInterface, NetworkInterface

__all__ = ["TcpNetwork", "UdpNetwork", "UnixNetwork"]

_LIMIT = 1 << 20
T = TypeVar("T")


async def _connecting(what: str, limit: float, opening: Awaitable[T]) -> T:
    """Await ``opening`` within ``limit`` seconds; name ``what`` in the error."""
    try:
        async with asyncio.timeout(limit):
            return await opening
    except TimeoutError:
        raise TimeoutError(f"{what}: no connection within {limit} s") from None
    except OSError as exc:
        # The system's words for the errno: asyncio's loop says "Connect call failed ..."
        # where uvloop says "Connection refused".
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConnectionError(f"{what}: cannot connect: {reason}") from exc


class TcpNetwork(NetworkInterface, Driver):
    """Connects to ``host:port`` over TCP for each stream a client opens.

    Config:
        host: the endpoint's host name or address, as seen from the exporter.
        port: the endpoint's TCP port.
        connect_timeout: seconds to wait for the connection.
    """

    host: str
    port: int
    connect_timeout: float = 10.0

    @export_stream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncioStream]:
        """Open a TCP connection to the endpoint."""
        reader, writer = await _connecting(
            f"tcp {self.host}:{self.port}",
            self.connect_timeout,
            asyncio.open_connection(self.host, self.port, limit=_LIMIT),
        )
        async with AsyncioStream(reader, writer) as stream:
            yield stream

    @export
    async def address(self) -> str:
        """The endpoint as ``host:port``."""
        return f"{self.host}:{self.port}"


class UnixNetwork(NetworkInterface, Driver):
    """Connects to a unix socket for each stream a client opens.

    Config:
        path: the socket's path on the exporter host.
        connect_timeout: seconds to wait for the connection.
    """

    path: str
    connect_timeout: float = 10.0

    @export_stream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncioStream]:
        """Open a connection to the unix socket."""
        reader, writer = await _connecting(
            f"unix socket {self.path}",
            self.connect_timeout,
            asyncio.open_unix_connection(self.path, limit=_LIMIT),
        )
        async with AsyncioStream(reader, writer) as stream:
            yield stream

    @export
    async def address(self) -> str:
        """The socket path."""
        return self.path


class UdpNetwork(DatagramInterface, Driver):
    """Sends datagrams to ``host:port`` from a fresh UDP socket for each stream; the stream
    carries the datagrams both ways as frames (see :mod:`tether.drivers.network`).

    Config:
        host: the endpoint's host name or address, as seen from the exporter.
        port: the endpoint's UDP port.
        queue_size: datagrams kept for a slow client before the oldest are dropped.
    """

    host: str
    port: int
    queue_size: int = 1024

    @export_stream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[UdpStream]:
        """Open a UDP socket connected to the endpoint."""
        stream = UdpStream(self.queue_size)
        loop = asyncio.get_running_loop()
        what = f"udp {self.host}:{self.port}"
        sock = await _connecting(what, 10.0, _udp_socket(self.host, self.port))
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: UdpProtocol(stream), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        stream.transport = transport
        stream.sock = sock
        try:
            yield stream
        finally:
            if stream.dropped:
                self.logger.warning(
                    "udp %s:%d: dropped %d datagrams (client too slow)",
                    self.host,
                    self.port,
                    stream.dropped,
                )
            await stream.aclose()

    @export
    async def address(self) -> str:
        """The endpoint as ``host:port``."""
        return f"{self.host}:{self.port}"


async def _udp_socket(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket connected to ``host:port`` (the first address that works)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error
