"""REAL SOCKETS. Keepalive on both ends: a dead or silent peer is noticed in bounded time.

Time is driven by making the intervals small (tens of milliseconds) and waiting on events and
sockets, never by sleeping: the server's timer runs on the event loop's clock, and each test
waits for the outcome (the protocol's ``closed`` event, a frame on a socket, a call raising).
The lower bounds asserted are exact consequences of the rules; the upper bounds are only the
safety net (``SAFETY``) against hangs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from tether.errors import ConfigError, ConnectionLost
from tether.wire import (
    NEED_DATA,
    Call,
    ClientConnection,
    Connection,
    Event,
    GoAway,
    Hello,
    Ping,
    Pong,
    Role,
    ServerProtocol,
    connect_socket,
    parse_address,
)
from tether.wire._frames import FrameDecoder, encode_event

from ._server_kit import SAFETY, handshake, in_thread, read_until_eof, serving

KEEPALIVE = 0.05
TIMEOUT = 0.1
#: uvloop's clock has millisecond resolution: intervals measured on it may look 1 ms short.
TICK = 0.002


# -- the server notices a silent client --------------------------------------------------------


async def next_frame(sock: socket.socket, decoder: FrameDecoder) -> Event:
    loop = asyncio.get_running_loop()
    while (frame := decoder.next_frame()) is None:
        data = await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), SAFETY)
        assert data, "the server closed the connection"
        decoder.feed(data)
    return frame[0]


def test_a_silent_client_is_pinged_then_dropped_and_its_calls_cancelled(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        options = {"keepalive": KEEPALIVE, "keepalive_timeout": TIMEOUT}
        async with serving(socket_dir, **options) as server:
            client = Connection(Role.CLIENT)
            with await server.connect_raw() as sock:
                protocol = await server.next_protocol()
                await handshake(sock, client)
                await loop.sock_sendall(sock, client.send(Call(1, server.driver.uuid, "hang")))
                await asyncio.wait_for(server.driver.hanging.wait(), SAFETY)
                silent_since = protocol.last_received
                await asyncio.wait_for(protocol.closed.wait(), SAFETY)
                closed_at = loop.time()
                await asyncio.wait_for(server.driver.hang_cancelled.wait(), SAFETY)
                events = await read_until_eof(sock)
            assert closed_at - silent_since >= KEEPALIVE + TIMEOUT - TICK
            assert [type(event) for event in events] == [Ping, GoAway]
            assert isinstance(events[1], GoAway) and events[1].code == "keepalive_timeout"
            assert protocol._keepalive_timer is None
            assert await in_thread(server.good_call, "still serving") == "still serving"

    run(main())


def test_a_client_that_never_says_hello_is_dropped(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        options = {"keepalive": KEEPALIVE, "keepalive_timeout": TIMEOUT}
        async with serving(socket_dir, **options) as server:
            with await server.connect_raw() as sock:
                protocol = await server.next_protocol()
                connected_at = protocol.last_received
                events = await read_until_eof(sock)
            closed_after = loop.time() - connected_at
            # No PING before the handshake: the only frame is the goodbye.
            assert len(events) == 1 and isinstance(events[0], GoAway), events
            assert events[0].code == "keepalive_timeout"
            assert protocol.closed.is_set()
            assert closed_after >= KEEPALIVE + TIMEOUT - TICK

    run(main())


def test_a_client_that_answers_pings_is_kept_until_it_stops(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        options = {"keepalive": KEEPALIVE, "keepalive_timeout": TIMEOUT}
        async with serving(socket_dir, **options) as server:
            client = Connection(Role.CLIENT)
            decoder = FrameDecoder(1 << 20)
            with await server.connect_raw() as sock:
                protocol = await server.next_protocol()
                await handshake(sock, client)
                for _ in range(3):
                    ping = await next_frame(sock, decoder)
                    pinged_at = loop.time()
                    assert isinstance(ping, Ping)
                    assert not protocol.closed.is_set()
                    await loop.sock_sendall(sock, client.send(Pong(ping.payload)))
                    answered_at = loop.time()
                # The next PING comes only after a whole interval of silence.
                assert isinstance(await next_frame(sock, decoder), Ping)
                assert loop.time() - answered_at >= KEEPALIVE - TICK
                assert answered_at >= pinged_at
                # ... and without an answer the client is gone.
                await asyncio.wait_for(protocol.closed.wait(), SAFETY)
                assert loop.time() - answered_at >= KEEPALIVE + TIMEOUT - TICK
                assert [type(e) for e in await read_until_eof(sock)] == [GoAway]

    run(main())


def test_an_idle_client_connection_keeps_a_keepalive_server_happy(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    """The blocking client's idle reader answers the server's PINGs between calls."""

    async def main() -> None:
        options = {"keepalive": KEEPALIVE, "keepalive_timeout": 2.0}
        async with serving(socket_dir, **options) as server:
            pongs: list[Pong] = []

            def idle_client() -> object:
                sock = connect_socket(parse_address(f"unix://{server.path}"))
                # Quieter than the server: the server's PINGs are what keeps the line busy.
                with ClientConnection(sock, keepalive=4 * KEEPALIVE) as client:
                    # Wait (on the driver's event) until the server has pinged and been
                    # answered three times, then check the connection still works.
                    done = server_saw_pongs.result(SAFETY)
                    pongs.extend(done)
                    return client.call(server.driver.uuid, "echo", ["alive"], {})

            loop = asyncio.get_running_loop()
            server_saw_pongs: concurrent.futures.Future[list[Pong]] = concurrent.futures.Future()
            task = loop.create_task(in_thread(idle_client))
            protocol = await server.next_protocol()
            seen: list[Pong] = []
            original = protocol._dispatch

            def spy(event: Event) -> None:
                if isinstance(event, Pong):
                    seen.append(event)
                    if len(seen) == 3:
                        server_saw_pongs.set_result(list(seen))
                original(event)

            protocol._dispatch = spy  # type: ignore[method-assign]
            # The call works after three ping rounds: the server never gave up on the client.
            assert await task == "alive"
            assert len(pongs) == 3

    run(main())


# -- the client notices a dead or silent server -----------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[tuple[socket.socket, socket.socket]]:
    """``(client_sock, server_sock)``: the server's Hello is already written, then silence."""
    client_sock, server_sock = socket.socketpair()
    # Written ahead: the client reads it after sending its own Hello.
    server_sock.sendall(encode_event(Hello(1, {"report": []})))
    with client_sock, server_sock:
        yield client_sock, server_sock


class PeerReader:
    """The silent server's ear: decodes what the client sends (blocking reads)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.conn = Connection(Role.SERVER)
        self.events: list[Event] = []
        sock.settimeout(SAFETY)

    def frames(self, count: int) -> list[Event]:
        """Read until ``count`` frames arrived from the client in all; return them all."""
        while len(self.events) < count:
            data = self.sock.recv(1 << 16)
            assert data, "the client closed the connection"
            self.conn.receive_data(data)
            while (event := self.conn.next_event()) is not NEED_DATA:
                assert isinstance(event, Event)
                self.events.append(event)
                if isinstance(event, Hello):
                    self.conn.send(self.conn.hello())  # what we wrote ahead, for the state
        return self.events


def test_a_call_in_flight_fails_when_the_server_goes_silent(
    silent_server: tuple[socket.socket, socket.socket],
) -> None:
    client_sock, server_sock = silent_server
    client = ClientConnection(client_sock, keepalive=KEEPALIVE)
    try:
        started = time.monotonic()
        with pytest.raises(ConnectionLost, match=r"no answer|stopped answering"):
            client.call("node", "method", [], {})
        elapsed = time.monotonic() - started
    finally:
        client.close()
    # PING after one interval of silence, dead two intervals after that.
    assert elapsed >= 3 * KEEPALIVE
    events = PeerReader(server_sock).frames(3)
    assert [type(event) for event in events[:3]] == [Hello, Call, Ping]
    assert not client.alive


@pytest.mark.parametrize("how", ["close", "reset"])
def test_calls_in_flight_fail_at_once_when_the_server_dies(
    silent_server: tuple[socket.socket, socket.socket], how: str
) -> None:
    """No keepalive needed: the kernel tells the client. Leader and follower both fail."""
    client_sock, server_sock = silent_server
    client = ClientConnection(client_sock, keepalive=None)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        calls = [pool.submit(client.call, "node", f"m{i}", [], {}) for i in range(2)]
        # Both calls are on the wire (the server read them) before it dies.
        events = PeerReader(server_sock).frames(3)
        assert [type(event) for event in events] == [Hello, Call, Call]
        if how == "reset":
            server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        server_sock.close()
        for call in calls:
            with pytest.raises(ConnectionLost):
                call.result(SAFETY)
    assert not client.alive
    client.close()


def test_an_idle_client_answers_the_servers_ping(
    silent_server: tuple[socket.socket, socket.socket],
) -> None:
    client_sock, server_sock = silent_server
    with ClientConnection(client_sock, keepalive=KEEPALIVE):
        reader = PeerReader(server_sock)
        assert [type(event) for event in reader.frames(1)] == [Hello]
        server_sock.sendall(encode_event(Ping(b"12345678")))
        # The client may also PING us (we are silent); the PONG is among the next frames.
        count = 2
        while Pong(b"12345678") not in reader.frames(count):
            count += 1


def test_a_byte_stream_upload_survives_the_idle_reader(
    run: Callable[[Awaitable[None]], None], socket_dir: str
) -> None:
    """The idle reader polls without touching the socket's timeout, so a sender blocked on a
    full socket buffer is never made non-blocking under its feet."""

    async def main() -> None:
        async with serving(socket_dir) as server:

            def upload() -> None:
                sock = connect_socket(parse_address(f"unix://{server.path}"))
                with (
                    ClientConnection(sock, keepalive=0.02) as client,
                    client.open_stream(server.driver.uuid, "sink", [], {}) as stream,
                ):
                    chunk = bytes(64 << 10)
                    for _ in range(256):
                        stream.send(chunk)

            await in_thread(upload)
            assert server.driver.sunk == 256 * (64 << 10)

    run(main())


@pytest.mark.parametrize("option", ["keepalive", "keepalive_timeout"])
@pytest.mark.parametrize("value", [0, -1.0])
def test_keepalive_options_must_be_positive(option: str, value: float) -> None:
    async def resolve(meta: dict[str, object]) -> Any:
        raise AssertionError("never called")

    with pytest.raises(ConfigError, match=f"{option} must be positive seconds"):
        ServerProtocol(resolve, **{option: value})  # type: ignore[arg-type]
