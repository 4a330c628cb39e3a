"""REAL SOCKETS kit: a ``ServerProtocol`` on a unix socket serving a test driver, and raw
client helpers. Shared by ``test_server_garbage.py`` and ``test_keepalive.py``."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from tether import Driver, export, export_stream
from tether.driver import DriverHost
from tether.testing._serve import LocalSession
from tether.wire import (
    ClientConnection,
    Connection,
    Event,
    GoAway,
    Hello,
    Role,
    ServerProtocol,
    connect_socket,
    parse_address,
)
from tether.wire._frames import FrameDecoder

T = TypeVar("T")
CHUNK = 4096
SAFETY = 10.0  # seconds; only ever reached when something hangs


# -- the driver -------------------------------------------------------------------------------


class Firehose(Driver):
    """Answers calls; its byte stream produces data for as long as anyone asks."""

    def __init__(self) -> None:
        super().__init__()
        self.produced = 0
        self.sunk = 0
        self.sunk_digest = hashlib.sha256()
        self.on_chunk: Callable[[], None] = lambda: None
        self.hanging = asyncio.Event()
        self.hang_cancelled = asyncio.Event()

    @export
    async def echo(self, value: object) -> object:
        return value

    @export
    async def big(self, size: int) -> bytes:
        return bytes(size)

    @export
    async def hang(self) -> None:
        """Never returns; records that it started and that it was cancelled."""
        self.hanging.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.hang_cancelled.set()

    @export
    async def blobs(self, count: int, size: int) -> AsyncIterator[bytes]:
        for _ in range(count):
            yield bytes(size)

    @export_stream
    @asynccontextmanager
    async def firehose(self) -> AsyncIterator[object]:
        yield _FirehoseStream(self)

    @export_stream
    @asynccontextmanager
    async def sink(self) -> AsyncIterator[object]:
        yield _SinkStream(self)


class _SinkStream:
    """Takes bytes until the client's EOF, then ends its own side."""

    def __init__(self, driver: Firehose) -> None:
        self.driver = driver
        self.eof = asyncio.Event()

    async def send(self, data: bytes) -> None:
        self.driver.sunk += len(data)
        self.driver.sunk_digest.update(data)

    async def send_eof(self) -> None:
        self.eof.set()

    async def receive(self) -> bytes:
        await self.eof.wait()
        return b""


class _FirehoseStream:
    def __init__(self, driver: Firehose) -> None:
        self.driver = driver

    async def send(self, data: bytes) -> None:
        pass

    async def receive(self) -> bytes:
        self.driver.on_chunk()
        self.driver.produced += CHUNK
        return bytes(CHUNK)


# -- the server -------------------------------------------------------------------------------


class _RecordingProtocol(ServerProtocol):
    """A ServerProtocol that shows the test its transport and when it was connected."""

    transport: asyncio.WriteTransport

    def __init__(self, server: Server, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        super().connection_made(transport)
        self._server.protocols.append(self)
        self._server.connected.put_nowait(self)


class Server:
    def __init__(self, path: str, driver: Firehose) -> None:
        self.path = path
        self.driver = driver
        self.protocols: list[_RecordingProtocol] = []
        self.connected: asyncio.Queue[_RecordingProtocol] = asyncio.Queue()

    async def next_protocol(self) -> _RecordingProtocol:
        """The server side of the next connection, once the server has accepted it."""
        return await asyncio.wait_for(self.connected.get(), SAFETY)

    async def connect_raw(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, self.path)
        return sock

    async def connect_greeted(self) -> socket.socket:
        """A raw connection past the HELLO exchange: the frames after it are the test's."""
        sock = await self.connect_raw()
        await handshake(sock, Connection(Role.CLIENT))
        return sock

    def good_call(self, value: object) -> object:
        """A well-behaved blocking client: connect, call, close (run it on a worker thread)."""
        sock = connect_socket(parse_address(f"unix://{self.path}"))
        with ClientConnection(sock, keepalive=None) as client:
            return client.call(self.driver.uuid, "echo", [value], {})


@asynccontextmanager
async def serving(socket_dir: str, **protocol_options: Any) -> AsyncIterator[Server]:
    """A unix-socket server of a fresh ``Firehose``; ``protocol_options`` go to each protocol."""
    driver = Firehose()
    host = DriverHost(driver)
    session = LocalSession(host)
    await host.start()
    server = Server(str(Path(socket_dir) / "s"), driver)

    listener = await asyncio.get_running_loop().create_unix_server(
        lambda: _RecordingProtocol(server, session.resolve, **protocol_options), server.path
    )
    try:
        yield server
    finally:
        listener.close()
        for protocol in server.protocols:
            protocol.close()
        await listener.wait_closed()
        await host.stop()


# -- raw client helpers -----------------------------------------------------------------------


async def read_until_eof(sock: socket.socket) -> list[Event]:
    """Every frame the server sends until it closes the connection."""
    loop = asyncio.get_running_loop()
    decoder = FrameDecoder(1 << 24)
    events: list[Event] = []
    while True:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), SAFETY)
        except ConnectionResetError:
            data = b""
        if not data:
            assert decoder.buffered == 0, "the server closed in the middle of a frame"
            return events
        decoder.feed(data)
        while (frame := decoder.next_frame()) is not None:
            events.append(frame[0])


async def handshake(sock: socket.socket, conn: Connection) -> Hello:
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, conn.send(conn.hello()))
    while True:
        data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), SAFETY)
        assert data, "the server closed during the handshake"
        conn.receive_data(data)
        event = conn.next_event()
        if isinstance(event, Hello):
            return event


def assert_goaway_protocol_error(events: list[Event], match: str = "") -> None:
    assert len(events) == 1 and isinstance(events[0], GoAway), events
    assert events[0].code == "protocol_error"
    assert match in events[0].message


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), SAFETY)
