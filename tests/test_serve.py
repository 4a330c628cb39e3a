"""End to end through ``serve()``: the real protocol over a socket pair, in one process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import ClassVar

import pytest
from pydantic import BaseModel

from tether import Driver, export, export_stream
from tether.driver import AsyncioStream
from tether.drivers.network import TcpNetwork
from tether.drivers.power import MockPower, PowerReading
from tether.errors import (
    DriverError,
    DriverNotImplemented,
    DriverTimeout,
    InvalidArgument,
    MethodNotFound,
)
from tether.testing import serve
from tether.testing._serve import SERVE_LOOPS


class Settings(BaseModel):
    level: int


class Gadget(Driver):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.stopped = threading.Event()
        self.cancelled = threading.Event()
        self.started_wait = threading.Event()

    @export
    async def echo(self, value: object) -> object:
        return value

    @export
    async def apply(self, settings: Settings) -> Settings:
        return Settings(level=settings.level + 1)

    @export
    def add(self, a: int, b: int = 1) -> int:
        return a + b

    @export
    async def fail(self) -> None:
        raise ValueError("bad thing")

    @export
    async def unimplemented(self) -> None:
        raise NotImplementedError

    @export
    async def slow(self) -> None:
        raise TimeoutError("too slow")

    @export
    async def wait_forever(self) -> None:
        self.started_wait.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    @export
    async def count(self, n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    @export
    def sync_count(self, n: int) -> Iterator[int]:
        yield from range(n)

    @export
    async def endless(self) -> AsyncIterator[int]:
        i = 0
        try:
            while True:
                yield i
                i += 1
        finally:
            self.cancelled.set()

    @export
    async def unencodable(self) -> object:
        return object()

    @export_stream
    @asynccontextmanager
    async def upper(self) -> AsyncIterator[object]:
        yield _UpperStream()

    def hidden(self) -> str:
        return "secret"

    def stop(self) -> None:
        self.stopped.set()


class _UpperStream:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def send(self, data: bytes) -> None:
        await self.queue.put(data.upper())

    async def send_eof(self) -> None:
        await self.queue.put(b"")

    async def receive(self) -> bytes:
        return await self.queue.get()


@pytest.fixture
def gadget() -> Iterator[tuple[Gadget, object]]:
    driver = Gadget()
    with serve(driver) as client:
        yield driver, client


def test_unary_values_round_trip(gadget: tuple[Gadget, object]) -> None:
    _, client = gadget
    for value in [None, 1, -2.5, "text", b"\x00bytes", [1, [2]], {"k": {"n": True}}]:
        assert client.call("echo", value) == value  # type: ignore[attr-defined]


def test_sync_methods_and_defaults(gadget: tuple[Gadget, object]) -> None:
    _, client = gadget
    assert client.call("add", 2) == 3  # type: ignore[attr-defined]
    assert client.call("add", a=2, b=5) == 7  # type: ignore[attr-defined]


def test_models_travel_as_dicts_and_are_rebuilt_from_the_annotation(
    gadget: tuple[Gadget, object],
) -> None:
    _, client = gadget
    result = client.call("apply", Settings(level=1))  # type: ignore[attr-defined]
    assert result == Settings(level=2)


@pytest.mark.parametrize(
    ("method", "args", "error", "match"),
    [
        ("nope", [], MethodNotFound, "no exported method 'nope'"),
        ("hidden", [], MethodNotFound, "no exported method 'hidden'"),
        ("add", ["x"], InvalidArgument, "argument 'a'"),
        ("add", [], InvalidArgument, "missing a required argument: 'a'"),
        ("fail", [], DriverError, "ValueError: bad thing"),
        ("unimplemented", [], DriverNotImplemented, "unimplemented is not implemented"),
        ("slow", [], DriverTimeout, "too slow"),
        ("unencodable", [], DriverError, "result cannot be sent"),
        ("upper", [], MethodNotFound, "is a byte stream"),
    ],
)
def test_errors_reach_the_client_and_the_exporter_keeps_serving(
    gadget: tuple[Gadget, object],
    method: str,
    args: list[object],
    error: type[Exception],
    match: str,
) -> None:
    _, client = gadget
    with pytest.raises(error, match=match):
        client.call(method, *args)  # type: ignore[attr-defined]
    assert client.call("echo", "still here") == "still here"  # type: ignore[attr-defined]


def test_builtin_errors_are_catchable_as_python_errors(gadget: tuple[Gadget, object]) -> None:
    _, client = gadget
    with pytest.raises(NotImplementedError):
        client.call("unimplemented")  # type: ignore[attr-defined]
    with pytest.raises(TimeoutError):
        client.call("slow")  # type: ignore[attr-defined]


def test_streaming_calls(gadget: tuple[Gadget, object]) -> None:
    _, client = gadget
    assert list(client.streaming_call("count", 5)) == [0, 1, 2, 3, 4]  # type: ignore[attr-defined]
    assert list(client.streaming_call("sync_count", 3)) == [0, 1, 2]  # type: ignore[attr-defined]


def test_leaving_a_stream_early_cancels_the_driver_generator(gadget: tuple[Gadget, object]) -> None:
    driver, client = gadget
    items = client.streaming_call("endless")  # type: ignore[attr-defined]
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert driver.cancelled.wait(10)
    assert client.call("echo", 1) == 1  # type: ignore[attr-defined]


def test_a_blocked_call_does_not_block_other_threads(gadget: tuple[Gadget, object]) -> None:
    driver, client = gadget
    outcome: list[BaseException] = []

    def waiting_call() -> None:
        try:
            client.call("wait_forever")  # type: ignore[attr-defined]
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=waiting_call)
    thread.start()
    assert driver.started_wait.wait(10)
    assert client.call("add", 1, 1) == 2  # type: ignore[attr-defined]
    client._target.close()  # type: ignore[attr-defined]
    thread.join(10)
    assert [type(e).__name__ for e in outcome] == ["ConnectionLost"]


def test_ctrl_c_cancels_the_call_on_the_driver(gadget: tuple[Gadget, object]) -> None:
    driver, client = gadget

    def interrupt_when_waiting() -> None:
        driver.started_wait.wait(10)
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)  # type: ignore[arg-type]

    threading.Thread(target=interrupt_when_waiting).start()
    with pytest.raises(KeyboardInterrupt):
        client.call("wait_forever")  # type: ignore[attr-defined]
    assert driver.cancelled.wait(10)
    assert client.call("echo", "alive") == "alive"  # type: ignore[attr-defined]


def test_byte_stream_round_trip(gadget: tuple[Gadget, object]) -> None:
    _, client = gadget
    with client.stream("upper") as stream:  # type: ignore[attr-defined]
        stream.send(b"hello ")
        stream.send(b"world")
        # A byte stream keeps no message boundaries (the exporter may hand both sends to the
        # driver at once): read until all of it is back.
        received = b""
        while len(received) < len(b"hello world"):
            chunk = stream.receive()
            assert chunk, f"EOF after {received!r}"
            received += chunk
        assert received == b"HELLO WORLD"
        stream.send_eof()
        assert stream.receive() == b""


def test_opening_a_missing_stream_fails_at_open(gadget: tuple[Gadget, object]) -> None:
    _, client = gadget
    with pytest.raises(MethodNotFound, match="not a byte stream"), client.stream("count", 1):  # type: ignore[attr-defined]
        pass


def test_teardown_runs_stop() -> None:
    driver = Gadget()
    with serve(driver) as client:
        client.call("echo", 1)  # type: ignore[attr-defined]
    assert driver.stopped.is_set()


def test_typed_power_client() -> None:
    with serve(MockPower(voltage=3.3, samples=2)) as power:
        assert power.status() is False  # type: ignore[attr-defined]
        power.on()  # type: ignore[attr-defined]
        assert power.status() is True  # type: ignore[attr-defined]
        readings = list(power.read())  # type: ignore[attr-defined]
        assert readings == [PowerReading(voltage=3.3, current=0.5)] * 2


def test_tcp_network_stream_to_a_real_socket() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo_once() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    thread = threading.Thread(target=echo_once)
    thread.start()
    payload = bytes(range(256)) * 8192  # 2 MiB: crosses several windows
    received = bytearray()
    with serve(TcpNetwork(host="127.0.0.1", port=port)) as network:
        assert network.address() == f"127.0.0.1:{port}"  # type: ignore[attr-defined]
        with network.connect() as stream:  # type: ignore[attr-defined]
            sender = threading.Thread(target=lambda: (stream.send(payload), stream.send_eof()))
            sender.start()
            while chunk := stream.receive():
                received += chunk
            sender.join()
    thread.join(10)
    server.close()
    assert bytes(received) == payload


class _CountingStream(AsyncioStream):
    """Counts which way the exporter wrote; ``backlog`` is set once the socket was full."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        super().__init__(reader, writer)
        self.direct = 0
        self.waited = 0
        self.backlog = threading.Event()

    def send_now(self, chunks: list[bytes | bytearray | memoryview]) -> bool:
        done = super().send_now(chunks)
        if done:
            self.direct += 1
        else:
            self.backlog.set()
        return done

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        self.waited += 1
        if self.writer.transport.get_write_buffer_size():
            self.backlog.set()
        await super().send(data)


class CountingNetwork(Driver):
    port: int
    streams: ClassVar[list[_CountingStream]] = []

    @export_stream
    @asynccontextmanager
    async def connect(self) -> AsyncIterator[_CountingStream]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        stream = _CountingStream(reader, writer)
        self.streams.append(stream)
        try:
            yield stream
        finally:
            await stream.aclose()


def test_a_byte_stream_keeps_its_order_whether_written_at_once_or_after_a_wait() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    # A small, fixed receive buffer: the exporter's socket fills up while nobody reads.
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    payload = os.urandom(12 << 20)  # more than the kernel buffers: a backlog is certain
    received = bytearray()

    def read_after_backlog() -> None:
        conn, _ = server.accept()
        CountingNetwork.streams[0].backlog.wait(60)
        with conn:
            while data := conn.recv(1 << 16):
                received.extend(data)

    CountingNetwork.streams.clear()
    reading = threading.Thread(target=read_after_backlog)
    driver = CountingNetwork(port=server.getsockname()[1])
    with serve(driver) as network, network.stream("connect") as stream:
        reading.start()
        for start in range(0, len(payload), 100_000):
            stream.send(payload[start : start + 100_000])
        stream.send_eof()
        assert stream.receive() == b""
    reading.join(60)
    server.close()
    assert bytes(received) == payload
    counted = CountingNetwork.streams[0]
    assert counted.backlog.is_set() and counted.direct > 0 and counted.waited > 0


class BrokenStart(Driver):
    async def start(self) -> None:
        raise RuntimeError("no device")


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_failing_start_closes_both_ends_of_the_socket_pair() -> None:
    with serve(MockPower()):  # a loop is parked (its descriptors stay open), and reused below
        pass
    before = open_fds()
    with pytest.raises(RuntimeError, match="no device") as info, serve(BrokenStart()):
        pass
    # Checked while ``info`` still holds the traceback (and so serve()'s frame): an unclosed
    # socket would only be closed, with a ResourceWarning, when the garbage collector ran.
    assert info.value is not None
    assert open_fds() == before


def test_no_thread_outlives_serve_but_one_parked_loop_thread() -> None:
    for _ in range(3):
        with serve(MockPower()) as power:
            power.on()  # type: ignore[attr-defined]
            assert any(t.name == "tether-serve" for t in threading.enumerate())
    left = [t for t in threading.enumerate() if t.name.startswith("tether-")]
    # The parked loop's thread, and the idle workers of its executor (sync methods ran there).
    assert all(SERVE_LOOPS.is_parked(t) for t in left)
    assert [t.name for t in left if "executor" not in t.name] == ["tether-serve"]
