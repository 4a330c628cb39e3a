"""Sending and polling without the GIL (``tether.wire._spinning``), on real sockets.

The C helper must release the GIL for its whole poll (another thread answers meanwhile), stop
at the deadline, report partial sends and send errors (without SIGPIPE). The loop side must
hold writes until the loop is about to block, keep the order of bytes behind a full socket,
and hand pending bytes over on close.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tether import Driver, export
from tether.testing import serve
from tether.testing._serve import SERVE_LOOPS
from tether.wire import LoopThread
from tether.wire import _loop as loop_module
from tether.wire._spinning import (
    NATIVE,
    POLL_DECLINED,
    POLL_NOTHING,
    POLL_READY,
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


@contextmanager
def answering_ping(peer: socket.socket) -> Iterator[None]:
    """A thread that reads b"ping" from ``peer`` and answers b"pong". It is Python code, so it
    runs only while the helper under test has let go of the GIL."""

    def answer() -> None:
        assert peer.recv(16) == b"ping"
        peer.sendall(b"pong")

    thread = threading.Thread(target=answer)
    thread.start()
    try:
        yield
    finally:
        thread.join()


@needs_native
def test_sends_then_sees_an_answer_already_there(pair: tuple[socket.socket, ...]) -> None:
    left, right = pair
    right.sendall(b"early")
    counts: list[int] = []
    assert send_then_poll(left.fileno(), b"hello", left.fileno(), 30.0, counts) == POLL_READY
    assert counts == [5]
    assert right.recv(16) == b"hello"
    assert left.recv(16) == b"early"


@needs_native
def test_the_poll_runs_without_the_gil(pair: tuple[socket.socket, ...]) -> None:
    left, right = pair
    with answering_ping(right):
        # Holding the GIL, this would poll for the whole 30 s and report no answer.
        assert send_then_poll(left.fileno(), b"ping", left.fileno(), 30.0, []) == POLL_READY
    assert left.recv(16) == b"pong"


@needs_native
def test_an_answer_from_a_thread_that_never_passes_is_still_read(
    pair: tuple[socket.socket, ...],
) -> None:
    # With share, a spin that finds its answer waits (at most 50 us) for its sender to pass
    # through the helper; a sender that never does must not keep the answer from it.
    left, right = pair
    right.sendall(b"answer")
    start = time.monotonic()
    assert send_then_poll(left.fileno(), b"", left.fileno(), 30.0, [], share=True) == POLL_READY
    assert time.monotonic() - start < 5.0
    assert left.recv(16) == b"answer"


@needs_native
def test_without_a_spin_it_waits_for_the_answer_without_the_gil(
    pair: tuple[socket.socket, ...],
) -> None:
    left, right = pair
    with answering_ping(right):
        found = send_then_poll(left.fileno(), b"ping", left.fileno(), 0.0, [], block=30.0)
    assert found == POLL_NOTHING  # the spin's result (there was none)
    left.setblocking(False)
    assert left.recv(16) == b"pong"  # but the call returned once the answer was there


@needs_native
def test_the_wait_ends_at_its_time_out(pair: tuple[socket.socket, ...]) -> None:
    left, _ = pair
    start = time.monotonic()
    assert send_then_poll(left.fileno(), b"", left.fileno(), 0.0, [], block=0.05) == POLL_NOTHING
    assert 0.05 <= time.monotonic() - start < 5.0


@needs_native
def test_gives_up_after_spin(pair: tuple[socket.socket, ...]) -> None:
    left, right = pair
    start = time.monotonic()
    counts: list[int] = []
    assert send_then_poll(left.fileno(), b"x", left.fileno(), 0.002, counts) == POLL_NOTHING
    assert time.monotonic() - start >= 0.002  # without share, preemption does not stop it
    assert send_then_poll(left.fileno(), b"", left.fileno(), 0.0, counts) == POLL_NOTHING
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
    assert answered == POLL_NOTHING
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


@contextmanager
def on_cpu(cpu: int) -> Iterator[None]:
    """Run the calling thread on ``cpu`` only, for the block."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@needs_native
def test_a_spin_that_loses_its_cpu_stops(pair: tuple[socket.socket, ...]) -> None:
    # Another process busy on the spinner's only CPU preempts it within a time slice or
    # two: the spin must end then (counted as finding nothing), not after its 5 s.
    left, _ = pair
    cpu = min(os.sched_getaffinity(0))
    busy = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import os, time; os.sched_setaffinity(0, {{{cpu}}}); "
            "end = time.monotonic() + 10\nwhile time.monotonic() < end: pass",
        ]
    )
    try:
        with on_cpu(cpu):
            start = time.monotonic()
            found = send_then_poll(left.fileno(), b"", left.fileno(), 5.0, [], share=True)
            took = time.monotonic() - start
    finally:
        busy.kill()
        busy.wait()
    assert found == POLL_NOTHING
    assert took < 2.5


def _passes_on(cpu: int, fd: int) -> None:
    """Another thread passes through the helper on ``cpu`` (it becomes the peer)."""

    def run() -> None:
        with on_cpu(cpu):
            send_then_poll(fd, b"", fd, 0.0, [], share=True)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


@needs_native
def test_no_spin_where_the_peer_ran_on_this_cpu(pair: tuple[socket.socket, ...]) -> None:
    left, _ = pair
    fd = left.fileno()
    cpu = min(os.sched_getaffinity(0))
    # The peer's pass counts for a millisecond: a loaded machine may take longer to get
    # here after the join, so some rounds may spin; one declined round is the proof.
    outcomes = set()
    with on_cpu(cpu):
        for _ in range(50):
            _passes_on(cpu, fd)
            outcomes.add(send_then_poll(fd, b"", fd, 0.001, [], share=True))
            if POLL_DECLINED in outcomes:
                break
        assert POLL_DECLINED in outcomes
        # The last pass was this thread's own: no peer, so it spins (and finds nothing).
        assert send_then_poll(fd, b"", fd, 0.001, [], share=True) == POLL_NOTHING
        # Without share the helper never declines.
        _passes_on(cpu, fd)
        assert send_then_poll(fd, b"", fd, 0.001, []) == POLL_NOTHING


@needs_native
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs")
def test_spins_where_the_peer_runs_on_another_cpu(pair: tuple[socket.socket, ...]) -> None:
    left, _ = pair
    fd = left.fileno()
    mine, theirs = sorted(os.sched_getaffinity(0))[:2]
    with on_cpu(mine):
        for _ in range(5):
            _passes_on(theirs, fd)
            assert send_then_poll(fd, b"", fd, 0.001, [], share=True) == POLL_NOTHING


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
    SERVE_LOOPS.take().close()  # a parked loop was made with the helper: not in this build
    with serve(Answer()) as client:
        connection = client._target  # type: ignore[attr-defined]
        assert not isinstance(connection._transport, SpinningTransport)
        assert client.call("value") == 42
    assert SERVE_LOOPS.parked is None  # uvloop's state cannot be checked: never parked
