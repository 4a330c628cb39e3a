"""REAL SOCKETS, both loops: the server's own bounds, in-process (the exporter-level floods
are in ``tests/hostile``): the handshake deadline, calls at once, pings while paused, a ping
flood."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tether.errors import ConfigError
from tether.wire import (
    DEFAULT_READ_BUFFER,
    MAX_PINGS_PER_SECOND,
    Call,
    ClientConnection,
    Connection,
    ConnectionLimits,
    Error,
    GoAway,
    Ping,
    Pong,
    Role,
    ServerProtocol,
    connect_socket,
    parse_address,
)
from tether.wire._frames import FrameDecoder, encode_event

from ._server_kit import SAFETY, in_thread, read_until_eof, serving


def test_no_hello_within_the_deadline_gets_goaway_handshake_timeout(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        async with serving(socket_dir, handshake_timeout=0.2) as server:
            with await server.connect_raw() as sock:
                hello = Connection(Role.CLIENT)
                data = hello.send(hello.hello())
                await asyncio.get_running_loop().sock_sendall(sock, data[:5])  # half a Hello
                events = await read_until_eof(sock)
            assert [type(e) for e in events] == [GoAway]
            assert isinstance(events[0], GoAway) and events[0].code == "handshake_timeout"
            assert await in_thread(server.good_call, "served") == "served"

    run(main())


def test_calls_past_max_streams_get_an_error_at_once(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        async with serving(socket_dir, max_streams=2) as server:
            with await server.connect_greeted() as sock:
                uuid = server.driver.uuid
                calls = b"".join(encode_event(Call(sid, uuid, "hang")) for sid in (1, 3, 5))
                await asyncio.get_running_loop().sock_sendall(sock, calls)
                decoder = FrameDecoder(1 << 20)
                while (frame := decoder.next_frame()) is None:
                    chunk = await asyncio.wait_for(
                        asyncio.get_running_loop().sock_recv(sock, 1 << 16), SAFETY
                    )
                    assert chunk
                    decoder.feed(chunk)
                event = frame[0]
                assert isinstance(event, Error) and event.stream_id == 5
                assert "too many calls at once" in event.error["message"]
                assert server.driver.hanging.is_set()  # the first two run

    run(main())


def test_pings_while_the_transport_is_paused_get_one_pong(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        async with serving(socket_dir) as server:
            with await server.connect_greeted() as sock:
                protocol = server.protocols[-1]
                protocol.pause_writing()  # as asyncio does when the peer stops reading
                count = MAX_PINGS_PER_SECOND  # all that is allowed at once
                pings = b"".join(encode_event(Ping(b"%08d" % i)) for i in range(count))
                # A call after the pings: once it runs, every ping before it was read.
                then = encode_event(Call(1, server.driver.uuid, "hang"))
                await asyncio.get_running_loop().sock_sendall(sock, pings + then)
                await asyncio.wait_for(server.driver.hanging.wait(), SAFETY)
                protocol.resume_writing()
                protocol.close()
                events = await read_until_eof(sock)
            assert [e for e in events if isinstance(e, Pong)] == [Pong(b"%08d" % (count - 1))]

    run(main())


def test_a_ping_flood_is_dropped_with_a_goaway(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        async with serving(socket_dir) as server:
            with await server.connect_greeted() as sock:
                pings = encode_event(Ping(b"12345678")) * (MAX_PINGS_PER_SECOND + 1)
                await asyncio.get_running_loop().sock_sendall(sock, pings)
                events = await read_until_eof(sock)
            goaway = events[-1]
            assert isinstance(goaway, GoAway) and goaway.code == "ping_flood", events[-3:]
            assert len([e for e in events if isinstance(e, Pong)]) <= MAX_PINGS_PER_SECOND

    run(main())


def test_a_penalised_address_is_refused_until_its_time_is_up() -> None:
    limits = ConnectionLimits(max_connections=10, max_per_peer=5)
    limits.penalise("10.0.0.1")
    assert not limits.admit("10.0.0.1") and limits.refused == 1
    assert limits.admit("10.0.0.2")  # another address is served
    limits.penalise("local")  # every unix-socket peer is "local": never penalised
    assert limits.admit("local")
    limits.penalise("10.0.0.3", 0.0)  # a penalty that is over
    assert limits.admit("10.0.0.3")


@pytest.mark.parametrize("size", [0, -1])
def test_the_read_buffer_must_be_positive(size: int) -> None:
    async def resolve(meta: dict[str, object]) -> Any:
        raise AssertionError("never called")

    with pytest.raises(ConfigError, match="read_buffer must be positive bytes"):
        ServerProtocol(resolve, read_buffer=size)


@pytest.mark.parametrize("size", [4 << 10, 100_003, DEFAULT_READ_BUFFER, 1 << 20])
def test_a_byte_stream_arrives_whole_whatever_the_read_buffer(
    run: Callable[[Awaitable[None]], None], socket_dir: str, size: int
) -> None:
    """Frames straddle reads at every offset (a read smaller than a frame, an odd size, one
    that holds a dozen frames): every byte reaches the driver once, in order."""
    blocks = [os.urandom(64 << 10) for _ in range(8)] + [os.urandom(1000), os.urandom(300_000)]

    async def main() -> None:
        async with serving(socket_dir, read_buffer=size) as server:

            def upload() -> None:
                sock = connect_socket(parse_address(f"unix://{server.path}"))
                with (
                    ClientConnection(sock, keepalive=None) as client,
                    client.open_stream(server.driver.uuid, "sink", [], {}) as stream,
                ):
                    for _ in range(8):
                        for block in blocks:
                            stream.send(block)

            uploaded = asyncio.ensure_future(in_thread(upload))
            protocol = await server.next_protocol()
            await uploaded
            assert len(protocol.get_buffer(-1)) == size  # reads took up to ``size`` bytes
            expected = hashlib.sha256(b"".join(blocks) * 8).hexdigest()
            assert server.driver.sunk == 8 * sum(len(block) for block in blocks)
            assert server.driver.sunk_digest.hexdigest() == expected

    run(main())
