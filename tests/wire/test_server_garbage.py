"""REAL SOCKETS. ``ServerProtocol`` on a unix socket against hostile and broken clients.

Each test runs a real asyncio server (``loop.create_unix_server``, once on asyncio's own loop
and once on uvloop) serving ``LocalSession(DriverHost(Firehose()))``, the way
``tether.testing.serve`` wires it. Raw clients are non-blocking sockets driven by the same loop;
the well-behaved client is a blocking :class:`tether.wire.ClientConnection` on a worker thread.

Nothing sleeps: every wait is on an event, a future or a socket, with a timeout only as a
safety net against hangs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
from collections.abc import Awaitable, Callable

import pytest

from tether.errors import DriverError
from tether.wire import (
    DEFAULT_MAX_FRAME,
    NEED_DATA,
    ClientConnection,
    Connection,
    ConnState,
    Data,
    GoAway,
    Hello,
    OpenStream,
    Result,
    Role,
    WindowUpdate,
    connect_socket,
    parse_address,
)
from tether.wire._frames import HEADER, FrameType, encode_event

from ._server_kit import (
    CHUNK,
    SAFETY,
    assert_goaway_protocol_error,
    handshake,
    in_thread,
    read_until_eof,
    serving,
)

# -- garbage ----------------------------------------------------------------------------------

GARBAGE = {
    "http-request": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "exceeds the limit"),
    "unknown-frame-type": (HEADER.pack(0, 200, 0, 0), "unknown frame type 200"),
    "call-before-hello": (encode_event(OpenStream(1, "n", "m")), "OpenStream"),
    "malformed-hello": (HEADER.pack(2, FrameType.HELLO, 0, 0) + b"\x92\xc1", "malformed msgpack"),
    "goaway-before-hello": (encode_event(GoAway()) + b"\x00" * 10, "GoAway"),
}


@pytest.mark.parametrize("garbage", GARBAGE, ids=list(GARBAGE))
def test_garbage_gets_goaway_protocol_error_and_the_server_keeps_serving(
    run: Callable[[Awaitable[None]], None], socket_dir: str, garbage: str
) -> None:
    data, match = GARBAGE[garbage]

    async def main() -> None:
        async with serving(socket_dir) as server:
            with await server.connect_raw() as sock:
                bad = await server.next_protocol()
                await asyncio.get_running_loop().sock_sendall(sock, data)
                assert_goaway_protocol_error(await read_until_eof(sock), match)
            await asyncio.wait_for(bad.closed.wait(), SAFETY)
            assert bad.conn.state is ConnState.ERROR
            assert await in_thread(server.good_call, "still serving") == "still serving"

    run(main())


def test_garbage_after_the_handshake(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        async with serving(socket_dir) as server:
            with await server.connect_greeted() as sock:
                await asyncio.get_running_loop().sock_sendall(sock, b"\xff" * 64)
                assert_goaway_protocol_error(await read_until_eof(sock))
            assert await in_thread(server.good_call, 1) == 1

    run(main())


@pytest.mark.parametrize("after_handshake", [False, True], ids=["before-hello", "after-hello"])
def test_a_100_mb_frame_header_is_refused_without_buffering(
    run: Callable[[Awaitable[None]], None], socket_dir: str, after_handshake: bool
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with serving(socket_dir) as server:
            with await server.connect_raw() as sock:
                protocol = await server.next_protocol()
                if after_handshake:
                    await handshake(sock, Connection(Role.CLIENT))
                header = HEADER.pack(100 << 20, FrameType.DATA, 0, 1)
                await loop.sock_sendall(sock, header + b"\0" * 1000)
                assert_goaway_protocol_error(
                    await read_until_eof(sock), f"frame of {100 << 20} bytes exceeds the limit"
                )
            await asyncio.wait_for(protocol.closed.wait(), SAFETY)
            # Refused on the header: nothing near 100 MB was ever held.
            assert protocol.conn._decoder.buffered <= len(header) + 1000
            assert await in_thread(server.good_call, "ok") == "ok"

    run(main())


@pytest.mark.parametrize("how", ["half-close", "close"])
def test_half_a_frame_then_close(
    run: Callable[[Awaitable[None]], None], socket_dir: str, how: str
) -> None:
    async def main() -> None:
        async with serving(socket_dir) as server:
            hello = encode_event(Hello(1, {"token": "t"}))
            sock = await server.connect_raw()
            protocol = await server.next_protocol()
            with sock:
                await asyncio.get_running_loop().sock_sendall(sock, hello[: len(hello) // 2])
                if how == "half-close":
                    sock.shutdown(socket.SHUT_WR)
                    # The server reads EOF mid-frame: a protocol error, reported before closing.
                    assert_goaway_protocol_error(
                        await read_until_eof(sock), "closed in the middle of a frame"
                    )
            await asyncio.wait_for(protocol.closed.wait(), SAFETY)
            assert protocol.conn.state in (ConnState.ERROR, ConnState.CLOSED)
            assert await in_thread(server.good_call, how) == how

    run(main())


def test_a_hello_with_invalid_utf8_gets_goaway(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        async with serving(socket_dir) as server:
            payload = b"\x92\x01\x81\xa1\xff\x01"  # [1, {"\xff": 1}]
            frame = HEADER.pack(len(payload), FrameType.HELLO, 0, 0) + payload
            with await server.connect_raw() as sock:
                await asyncio.get_running_loop().sock_sendall(sock, frame)
                assert_goaway_protocol_error(await read_until_eof(sock), "malformed")

    run(main())


# -- flow control against a real socket -------------------------------------------------------


def test_a_slow_reader_stops_the_server_after_about_one_window(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    window = 4 * CHUNK  # small, so the window (not the socket buffers) is what stops the server

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with serving(socket_dir) as server:
            blocked = asyncio.Event()

            def on_chunk() -> None:
                # The pump asks for a chunk only after writing the last one: if the window is
                # already spent, the server is about to park in _wait_writable.
                if slow.conn.send_window(1) <= 0:
                    blocked.set()

            server.driver.on_chunk = on_chunk
            client = Connection(Role.CLIENT, window=window)
            with await server.connect_raw() as sock:
                protocol = slow = await server.next_protocol()
                await handshake(sock, client)
                await loop.sock_sendall(
                    sock, client.send(OpenStream(1, server.driver.uuid, "firehose"))
                )
                # From here on the client never reads a byte.
                await asyncio.wait_for(blocked.wait(), SAFETY)
                sent = window - protocol.conn.send_window(1)
                assert window <= sent < window + CHUNK  # the window, overdrawn by < 1 frame
                assert server.driver.produced <= sent + CHUNK  # one chunk waits for credit
                produced, buffered = (
                    server.driver.produced,
                    protocol.transport.get_write_buffer_size(),
                )
                assert buffered <= window + CHUNK

                # Other clients are served meanwhile, and the stuck stream does not grow.
                assert await in_thread(server.good_call, "meanwhile") == "meanwhile"
                assert server.driver.produced == produced
                assert protocol.transport.get_write_buffer_size() == buffered
                assert protocol.conn.send_window(1) <= 0

                # Credit makes it flow again, for about one more window.
                blocked.clear()
                await loop.sock_sendall(sock, encode_event(WindowUpdate(1, window)))
                await asyncio.wait_for(blocked.wait(), SAFETY)
                assert produced < server.driver.produced <= produced + window + CHUNK
                assert protocol.conn.send_window(1) <= 0

    run(main())


def test_a_byte_stream_larger_than_the_window_flows_with_acks(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    """Control for the test above: a reader that consumes and acks gets far past one window."""
    window = 4 * CHUNK

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with serving(socket_dir) as server:
            client = Connection(Role.CLIENT, window=window)
            with await server.connect_raw() as sock:
                await handshake(sock, client)
                await loop.sock_sendall(
                    sock, client.send(OpenStream(1, server.driver.uuid, "firehose"))
                )
                received = 0
                while received < 10 * window:
                    data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), SAFETY)
                    assert data
                    client.receive_data(data)
                    while (event := client.next_event()) is not NEED_DATA:
                        if isinstance(event, Data):
                            received += len(event.data)
                            ack = client.ack_data(1, len(event.data))
                            if ack:
                                await loop.sock_sendall(sock, ack)
                        else:
                            assert isinstance(event, Result)
                assert client.state is ConnState.OPEN

    run(main())


def test_a_streaming_call_larger_than_a_quarter_window(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        async with serving(socket_dir) as server:

            def stream_blobs() -> int:
                sock = connect_socket(parse_address(f"unix://{server.path}"))
                with ClientConnection(sock, keepalive=None) as client:
                    # 6 MiB: more than the 4 MiB window, so the server needs the client's acks.
                    items = client.streaming_call(server.driver.uuid, "blobs", [96, 64 << 10], {})
                    return sum(len(item) for item in items)

            assert await in_thread(stream_blobs) == 96 * (64 << 10)

    run(main())


def test_closing_the_server_closes_its_connections(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        async with serving(socket_dir) as server:
            sock = await server.connect_raw()
            await handshake(sock, Connection(Role.CLIENT))
        # serving() closed every protocol on the way out.
        assert all(protocol.closed.is_set() for protocol in server.protocols)
        with contextlib.closing(sock):
            assert await read_until_eof(sock) in ([], [GoAway()])

    run(main())


def test_a_normal_close_says_goodbye(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        async with serving(socket_dir) as server:
            with await server.connect_raw() as sock:
                protocol = await server.next_protocol()
                await handshake(sock, Connection(Role.CLIENT))
                protocol.close()
                assert await read_until_eof(sock) == [GoAway("normal", "")]

    run(main())


def test_a_hello_with_an_unknown_version_gets_goaway(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        async with serving(socket_dir) as server:
            with await server.connect_raw() as sock:
                await asyncio.get_running_loop().sock_sendall(sock, encode_event(Hello(2)))
                assert_goaway_protocol_error(await read_until_eof(sock), "version 2")
            assert await in_thread(server.good_call, "v1") == "v1"

    run(main())


def test_a_result_over_the_clients_frame_limit_fails_that_call_only(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        async with serving(socket_dir) as server:

            def call_big_then_echo() -> object:
                sock = connect_socket(parse_address(f"unix://{server.path}"))
                with ClientConnection(sock, keepalive=None) as client:
                    with pytest.raises(DriverError, match="exceeds the peer's limit"):
                        client.call(server.driver.uuid, "big", [DEFAULT_MAX_FRAME + 1], {})
                    return client.call(server.driver.uuid, "echo", ["after"], {})

            assert await in_thread(call_big_then_echo) == "after"

    run(main())


def test_an_upload_arrives_intact_however_its_frames_are_read(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    """The server reads its socket into one reused buffer and hands the driver each read's
    payloads joined: every byte must arrive once, in order, whatever the frame sizes."""
    payload = hashlib.sha256(b"seed").digest() * (1 << 17)  # 4 MiB, not one repeated byte
    sizes = [1, 7, 4096, 65536, 100_000, 1 << 20, 3]

    async def main() -> None:
        async with serving(socket_dir) as server:

            def upload() -> None:
                sock = connect_socket(parse_address(f"unix://{server.path}"))
                with (
                    ClientConnection(sock, keepalive=None) as client,
                    client.open_stream(server.driver.uuid, "sink", [], {}) as stream,
                ):
                    position = 0
                    for turn in range(10_000):
                        if position >= len(payload):
                            break
                        size = sizes[turn % len(sizes)]
                        stream.send(payload[position : position + size])
                        position += size

            await in_thread(upload)
            assert server.driver.sunk == len(payload)
            assert server.driver.sunk_digest.digest() == hashlib.sha256(payload).digest()

    run(main())
