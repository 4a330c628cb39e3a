"""Sending and polling without the GIL (``tether.wire._spinning``), on real sockets.

The C helper must release the GIL for its whole poll (another thread answers meanwhile), stop
at the deadline, report partial sends and send errors (without SIGPIPE). The loop side must
hold writes until the loop is about to block, keep the order of bytes behind a full socket,
and hand pending bytes over on close.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import pytest

from tether import Driver, export
from tether.testing import serve
from tether.wire import LoopThread
from tether.wire import _loop as loop_module
from tether.wire._spinning import (
    NATIVE,
    SPIN_SKIP,
    DeferredTransport,
    SpinningSelector,
    SpinningTransport,
    send_then_poll,
)

needs_native = pytest.mark.skipif(not NATIVE, reason="tether.wire._native is not built")


def test_the_helper_is_built_where_there_is_a_compiler() -> None:
    # Without this, a broken build would only show as skipped tests and slower calls.
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: the helper is optional")
    assert NATIVE


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    left, right = socket.socketpair()
    yield left, right
    left.close()
    right.close()


@needs_native
def test_sends_then_sees_an_answer_already_there(pair: tuple[socket.socket, ...]) -> None:
    left, right = pair
    right.sendall(b"early")
    counts: list[int] = []
    assert send_then_poll(left.fileno(), b"hello", left.fileno(), 30.0, counts) is True
    assert counts == [5]
    assert right.recv(16) == b"hello"
    assert left.recv(16) == b"early"


@needs_native
def test_the_poll_runs_without_the_gil(pair: tuple[socket.socket, ...]) -> None:
    left, right = pair

    def answer() -> None:  # Python code: it runs only if the poll let go of the GIL
        assert right.recv(16) == b"ping"
        right.sendall(b"pong")

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        # Holding the GIL, this would poll for the whole 30 s and report no answer.
        assert send_then_poll(left.fileno(), b"ping", left.fileno(), 30.0, []) is True
    finally:
        thread.join()
    assert left.recv(16) == b"pong"


@needs_native
def test_gives_up_after_spin(pair: tuple[socket.socket, ...]) -> None:
    left, right = pair
    start = time.monotonic()
    counts: list[int] = []
    assert send_then_poll(left.fileno(), b"x", left.fileno(), 0.002, counts) is False
    assert time.monotonic() - start >= 0.002
    assert send_then_poll(left.fileno(), b"", left.fileno(), 0.0, counts) is False
    assert counts == [1, 0]
    assert right.recv(16) == b"x"


@needs_native
def test_a_full_socket_takes_part_of_the_data(pair: tuple[socket.socket, ...]) -> None:
    left, right = pair
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    data = bytes(range(256)) * 4096  # 1 MiB, far more than the buffers hold
    counts: list[int] = []
    answered = send_then_poll(left.fileno(), data, left.fileno(), 0.0, counts)
    sent = counts[0]
    assert 0 < sent < len(data)
    assert answered is False
    right.setblocking(False)
    received = bytearray()
    while len(received) < sent:
        received += right.recv(1 << 20)
    assert bytes(received) == data[:sent]


@needs_native
def test_a_closed_peer_raises_oserror_not_sigpipe(pair: tuple[socket.socket, ...]) -> None:
    left, right = pair
    right.close()
    with pytest.raises(OSError) as caught:
        send_then_poll(left.fileno(), b"anyone?", left.fileno(), 1.0, [])
    assert caught.value.errno is not None


@needs_native
def test_bad_arguments_are_a_type_error() -> None:
    from tether.wire._native import send_then_poll as raw

    with pytest.raises(TypeError):
        raw("3", b"", 3, 0, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        raw(3, "text", 3, 0, [])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        raw(3, b"", 3, 0, ())  # type: ignore[arg-type]  # the counts must be a list


# -- the loop side ------------------------------------------------------------------------


class Collect(asyncio.Protocol):
    """Tells when the connection is lost."""

    def __init__(self) -> None:
        self.lost = asyncio.Event()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, f"EOF after {len(data)} of {size} bytes"
        data += chunk
    return bytes(data)


Body = Callable[[DeferredTransport, Collect], Awaitable[None]]


@dataclass
class Wired:
    """A SpinningSelector loop serving one end of a socket pair; ``client`` is the other."""

    loop: asyncio.AbstractEventLoop
    selector: SpinningSelector
    server_sock: socket.socket
    client: socket.socket

    def run(self, body: Body) -> None:
        """Run ``body`` on the loop with a DeferredTransport around the server end."""

        async def main() -> None:
            transport, protocol = await self.loop.connect_accepted_socket(Collect, self.server_sock)
            assert isinstance(transport, asyncio.Transport)
            await body(DeferredTransport(transport, self.selector), protocol)

        self.loop.run_until_complete(main())


@pytest.fixture
def wired(pair: tuple[socket.socket, socket.socket]) -> Iterator[Wired]:
    selector = SpinningSelector(0.001)
    loop = asyncio.SelectorEventLoop(selector)
    yield Wired(loop, selector, *pair)
    loop.close()


@needs_native
def test_writes_wait_for_the_loop_to_block_then_go_in_order(wired: Wired) -> None:
    client = wired.client

    async def body(transport: DeferredTransport, _: Collect) -> None:
        transport.write(b"one ")
        transport.writelines([b"two ", memoryview(b"three")])
        assert transport.get_write_buffer_size() == 13
        client.setblocking(False)
        with pytest.raises(BlockingIOError):
            client.recv(64)  # nothing sent yet: the loop has not turned
        await asyncio.sleep(0)  # one turn of the loop: the selector sends
        client.setblocking(True)
        assert read_exactly(client, 13) == b"one two three"
        transport.close()

    wired.run(body)


@needs_native
def test_order_is_kept_behind_a_full_socket(wired: Wired) -> None:
    # 2 MiB in 32 KiB writes: the first go out from the selector without the GIL, one of
    # them only in part (the rest is queued in the asyncio transport), and every write
    # after it must queue behind that rest.
    chunks = [bytes([i]) * 32768 for i in range(64)]

    async def body(transport: DeferredTransport, _: Collect) -> None:
        for chunk in chunks:
            transport.write(chunk)
            await asyncio.sleep(0)
        assert transport.get_write_buffer_size() > 0
        received = await wired.loop.run_in_executor(None, read_exactly, wired.client, 64 * 32768)
        assert received == b"".join(chunks)
        transport.close()

    wired.run(body)


@needs_native
def test_close_sends_what_is_pending_then_eof(wired: Wired) -> None:
    async def body(transport: DeferredTransport, protocol: Collect) -> None:
        transport.write(b"last words")
        transport.close()
        await protocol.lost.wait()

    wired.run(body)
    assert read_exactly(wired.client, 10) == b"last words"
    assert wired.client.recv(16) == b""


@needs_native
def test_abort_drops_what_is_pending_and_the_rest_passes_through(wired: Wired) -> None:
    async def body(transport: DeferredTransport, protocol: Collect) -> None:
        assert transport.get_protocol() is protocol
        assert transport.get_extra_info("socket").fileno() == wired.server_sock.fileno()
        assert transport.is_reading()
        transport.pause_reading()
        assert not transport.is_reading()
        transport.resume_reading()
        assert transport.is_reading()
        transport.write(b"never sent")
        transport.abort()
        assert transport.is_closing()
        assert transport.get_write_buffer_size() == 0
        await protocol.lost.wait()

    wired.run(body)
    assert wired.client.recv(16) == b""  # EOF, and not a byte of what was pending


@needs_native
def test_a_spin_that_finds_nothing_skips_the_next_spins(wired: Wired) -> None:
    selector = wired.selector

    async def body(transport: DeferredTransport, _: Collect) -> None:
        transport.write(b"?")
        # The loop must block (on a timer) to spin: 1 ms for an answer that never comes.
        await asyncio.sleep(0.2)
        assert selector._skip == SPIN_SKIP
        transport.write(b"?")
        await asyncio.sleep(0.2)
        assert selector._skip == SPIN_SKIP - 1
        transport.close()

    wired.run(body)
    assert read_exactly(wired.client, 2) == b"??"


@needs_native
def test_a_write_to_a_dead_peer_reaches_the_protocol_as_a_lost_connection(
    wired: Wired,
) -> None:
    async def body(transport: DeferredTransport, protocol: Collect) -> None:
        wired.client.close()
        transport.write(b"anyone?")
        # The asyncio transport meets EPIPE inside select() and schedules connection_lost:
        # the loop must not then block in epoll.
        await protocol.lost.wait()

    wired.run(body)


# -- serve() ------------------------------------------------------------------------------


class Answer(Driver):
    @export
    async def value(self) -> int:
        return 42

    @export
    async def length(self, data: bytes) -> int:
        return len(data)


@needs_native
def test_serve_spins_on_both_ends_when_the_helper_is_built() -> None:
    with serve(Answer()) as client:
        connection = client._target  # type: ignore[attr-defined]
        assert isinstance(connection._transport, SpinningTransport)
        assert connection._transport._native
        assert [client.call("value") for _ in range(100)] == [42] * 100


@needs_native
def test_a_call_larger_than_the_socket_buffer_goes_out_whole() -> None:
    # The first send takes what the socket pair holds; the rest follows blocking.
    data = bytes(range(256)) * 3072  # 768 KiB: more than the pair buffers, under 1 MiB frames
    with serve(Answer()) as client:
        assert client.call("length", data) == len(data)
        assert client.call("value") == 42  # the frame boundary held


def test_without_the_helper_serve_neither_spins_nor_defers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(loop_module, "NATIVE", False)
    loop_thread = LoopThread("no-helper", start=False, spin=0.001)
    assert loop_thread.selector is None
    loop_thread.close()
    with serve(Answer()) as client:
        connection = client._target  # type: ignore[attr-defined]
        assert not isinstance(connection._transport, SpinningTransport)
        assert client.call("value") == 42
