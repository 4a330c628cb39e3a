"""``tether.wire._server`` helpers on their own: how received DATA reaches a byte-stream driver."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tether.driver import AsyncioStream
from tether.security import client_ssl_context, init_lab_certs, server_ssl_context
from tether.wire._bytestreams import _batches, _Inbox

BIG = bytes(100_000)


def test_small_payloads_are_joined_and_large_ones_passed_as_they_are() -> None:
    large = memoryview(bytearray(BIG))
    batches = _batches([b"a", b"b", large, b"c", b"d", BIG])
    assert batches == [b"ab", large, b"cd", BIG]
    assert batches[1] is large  # not copied


def test_a_lone_payload_is_passed_as_it_is() -> None:
    chunks = [memoryview(b"xyz")]
    assert _batches(chunks) is chunks


def test_the_inbox_copies_lent_views_but_keeps_owned_payloads() -> None:
    loop = asyncio.new_event_loop()
    try:
        inbox = _Inbox(loop, 1)
        owned = memoryview(bytearray(b"own"))
        buffer = bytearray(b"lentlent")
        assert inbox.put(owned, False, lent=False) is False  # nothing to keep
        assert inbox.put(memoryview(buffer)[:4], False) is True
        # Owned, but after a lent view: stays in order, so it is copied with it.
        assert inbox.put(memoryview(bytearray(b"late")), False, lent=False) is False
        inbox.keep()
        buffer[:] = b"XXXXXXXX"  # the receive buffer is reused
        items, size, frames, end = loop.run_until_complete(inbox.take())
    finally:
        loop.close()
    assert items[0] is owned
    assert [bytes(item) for item in items] == [b"own", b"lentlate"]
    assert (size, frames, end) == (11, 3, False)


def _read_all(sock: socket.socket, into: bytearray) -> None:
    with sock:
        while data := sock.recv(1 << 16):
            into += data


def test_send_now_writes_views_and_copies_only_what_the_socket_did_not_take(
    run: Callable[[Awaitable[Any]], Any],
) -> None:
    ours, theirs = socket.socketpair()
    payload = bytes(range(251)) * 16_000  # 4 MB, far more than the socket buffers hold
    received = bytearray()

    async def main() -> None:
        reader, writer = await asyncio.open_connection(sock=ours)
        stream = AsyncioStream(reader, writer)
        buffer = bytearray(payload)
        half = len(buffer) // 2
        assert stream.send_now([memoryview(buffer)[:half], memoryview(buffer)[half:]]) is True
        assert writer.transport.get_write_buffer_size() > 0  # the socket took only part
        buffer[:] = bytes(len(buffer))  # the caller reuses its buffer at once
        assert stream.send_now([b"late"]) is False  # a backlog: order needs ``send``
        reading = threading.Thread(target=_read_all, args=(theirs, received))
        reading.start()
        await stream.send(b"tail")
        await stream.aclose()
        await asyncio.get_running_loop().run_in_executor(None, reading.join)

    run(main())
    assert received == payload + b"tail"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return init_lab_certs(tmp_path_factory.mktemp("certs"))


def test_send_now_refuses_a_tls_connection(
    run: Callable[[Awaitable[Any]], Any], certs: Any
) -> None:
    async def main() -> bytes:
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.set_result(await reader.readexactly(5))
            writer.close()

        server = await asyncio.start_server(
            handle, "127.0.0.1", 0, ssl=server_ssl_context(certs.server_cert, certs.server_key)
        )
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ssl_context(certs.ca), server_hostname="localhost"
            )
            stream = AsyncioStream(reader, writer)
            # Written to the raw socket, the bytes would bypass the encryption.
            assert stream.send_now([b"plain"]) is False
            await stream.send(b"hello")
            data = await got
            await stream.aclose()
        return data

    assert run(main()) == b"hello"
