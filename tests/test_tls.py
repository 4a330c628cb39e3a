"""TLS end to end on loopback (real sockets, real handshakes): the blocking client's TLS channel
under concurrent callers and a byte stream at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.driver import ClientPolicy, DriverHost, build_client_tree
from tether.drivers.composite import Composite
from tether.drivers.network import TcpNetwork
from tether.drivers.power import MockPower
from tether.errors import ConnectFailed
from tether.security import client_ssl_context, init_lab_certs, server_ssl_context
from tether.testing._serve import LocalSession
from tether.wire import ClientConnection, LoopThread, ServerProtocol, connect_socket, parse_address


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> object:
    return init_lab_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def echo_port() -> Iterator[int]:
    loop_thread = LoopThread("echo")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = loop_thread.run(asyncio.start_server(handle, "127.0.0.1", 0))
    yield server.sockets[0].getsockname()[1]
    loop_thread.run(_close(server))
    loop_thread.close()


async def _close(server: asyncio.Server) -> None:
    server.close()
    await server.wait_closed()


@pytest.fixture
def tls_server(certs: object, echo_port: int) -> Iterator[int]:
    loop_thread = LoopThread("tls-server")
    root = Composite(
        children={"power": MockPower(), "net": TcpNetwork(host="127.0.0.1", port=echo_port)}
    )
    host = DriverHost(root, "lab")
    session = LocalSession(host)
    context = server_ssl_context(certs.server_cert, certs.server_key)  # type: ignore[attr-defined]

    async def start() -> asyncio.Server:
        await host.start()
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: ServerProtocol(session.resolve), "127.0.0.1", 0, ssl=context
        )

    server = loop_thread.run(start())
    yield server.sockets[0].getsockname()[1]

    async def stop() -> None:
        for protocol in list(session.protocols):
            protocol.close()
        await _close(server)
        await host.stop()

    loop_thread.run(stop())
    loop_thread.close()


def connect(port: int, ca: Path) -> ClientConnection:
    sock = connect_socket(
        parse_address(f"tls://localhost:{port}"), ssl_context=client_ssl_context(ca)
    )
    return ClientConnection(sock, keepalive=None)


def test_concurrent_calls_and_a_byte_stream_over_tls(certs: object, tls_server: int) -> None:
    connection = connect(tls_server, certs.ca)  # type: ignore[attr-defined]
    lab = build_client_tree(connection.server_meta["report"], connection, ClientPolicy())
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            for _ in range(200):
                lab.power.on()
                assert lab.power.status() is True
        except BaseException as exc:
            errors.append(exc)

    payload = bytes(range(256)) * 4096 * 4  # 4 MiB
    received = bytearray()
    threads = [threading.Thread(target=caller) for _ in range(3)]
    for thread in threads:
        thread.start()
    with lab.net.connect() as stream:
        sender = threading.Thread(target=lambda: (stream.send(payload), stream.send_eof()))
        sender.start()
        while chunk := stream.receive():
            received += chunk
        sender.join()
    for thread in threads:
        thread.join()
    connection.close()
    assert errors == []
    assert bytes(received) == payload


def test_a_client_that_does_not_trust_the_ca_fails_clearly(tls_server: int, tmp_path: Path) -> None:
    other = init_lab_certs(tmp_path / "other")
    with pytest.raises(ConnectFailed, match=r"TLS handshake failed|certificate verify failed"):
        connect(tls_server, other.ca)
