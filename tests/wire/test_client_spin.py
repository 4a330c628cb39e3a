"""The client's adaptive spin before blocking, on real sockets: it reads a reply that comes
while it spins, gives up after ``spin`` and then blocks at once for the next reads, over a
plain socket with and without a time-out (with the C helper, and in pure Python) and over
TLS; a unary call sends and polls in one step."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tether import Driver, export
from tether.driver import ClientPolicy, DriverHost, build_client_tree
from tether.security import client_ssl_context, init_lab_certs, server_ssl_context
from tether.testing._serve import LocalSession
from tether.wire import (
    ClientConnection,
    LoopThread,
    Ping,
    ServerProtocol,
    connect_socket,
    parse_address,
)
from tether.wire._spinning import NATIVE, SPIN_SKIP, SpinningTransport


class Answer(Driver):
    @export
    def value(self) -> int:
        return 42

    @export
    async def slowly(self) -> int:
        await asyncio.sleep(0.02)  # longer than the test's spin: the poll finds nothing
        return 7


def value(connection: ClientConnection) -> Any:
    tree = build_client_tree(connection.server_meta["report"], connection, ClientPolicy())
    return tree.call("value")


@contextmanager
def connected(kind: str, tmp_path: Path, spin: float) -> Iterator[ClientConnection]:
    """A ClientConnection with ``spin`` to a ServerProtocol on a loop thread."""
    loop_thread = LoopThread("spin-test-server")
    host = DriverHost(Answer(), "root")
    session = LocalSession(host)
    context = None
    if kind == "tls":
        certs = init_lab_certs(tmp_path / "certs")
        context = server_ssl_context(certs.server_cert, certs.server_key)

    async def start() -> asyncio.AbstractServer:
        await host.start()
        loop = asyncio.get_running_loop()
        if kind == "tls":
            return await loop.create_server(
                lambda: ServerProtocol(session.resolve), "127.0.0.1", 0, ssl=context
            )
        return await loop.create_unix_server(
            lambda: ServerProtocol(session.resolve), str(tmp_path / "s.sock")
        )

    server = loop_thread.run(start())
    try:
        if kind == "tls":
            port = server.sockets[0].getsockname()[1]
            address = parse_address(f"tls://localhost:{port}")
            sock: Any = connect_socket(address, ssl_context=client_ssl_context(certs.ca))
        else:
            sock = connect_socket(parse_address(f"unix://{tmp_path / 's.sock'}"))
        # keepalive=None leaves the socket blocking; a keepalive gives it a time-out.
        keepalive = None if kind == "unix-blocking" else 10.0
        connection = ClientConnection(sock, keepalive=keepalive, spin=spin)
        transport = connection._transport
        assert isinstance(transport, SpinningTransport)
        assert transport._native is (NATIVE and kind.startswith("unix"))
        if kind == "unix-python":
            transport._native = False
        try:
            yield connection
        finally:
            connection.close()
    finally:

        async def stop() -> None:
            for protocol in list(session.protocols):
                protocol.close()
            server.close()
            await host.stop()

        loop_thread.run(stop())
        loop_thread.close()


KINDS = ["unix-timeout", "unix-blocking", "unix-python", "tls"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_reply_that_comes_while_spinning_is_read(kind: str, tmp_path: Path) -> None:
    with connected(kind, tmp_path, spin=30.0) as connection:
        assert value(connection) == 42
        transport = connection._transport
        assert isinstance(transport, SpinningTransport)
        with connection._read_lock:
            transport._skip = 0  # (the call's spin may have been preempted on a busy machine)
            connection._send(Ping(b"spinning"))
            data = transport._poll()  # spins (up to 30 s) until the Pong is there
            assert data  # the Pong's bytes, read without blocking
            connection.conn.receive_data(data)
            assert type(connection.conn.next_event()).__name__ == "Pong"
        assert transport._skip == 0
        assert value(connection) == 42


@pytest.mark.parametrize("kind", KINDS)
def test_a_spin_that_finds_nothing_makes_the_next_reads_block_at_once(
    kind: str, tmp_path: Path
) -> None:
    with connected(kind, tmp_path, spin=0.001) as connection:
        transport = connection._transport
        assert isinstance(transport, SpinningTransport)
        with connection._read_lock:
            transport._skip = 0  # (the handshake's read may have spun in vain already)
            with pytest.raises(TimeoutError):
                transport.receive(0.01)  # nothing is coming: spins, then blocks 10 ms
            assert transport._skip == SPIN_SKIP
            with pytest.raises(TimeoutError):
                transport.receive(0.01)  # skipped: no spinning at all
            assert transport._skip == SPIN_SKIP - 1
        assert value(connection) == 42  # reading still works


def _pin_apart(server_thread: str) -> None:
    """This thread on one CPU and ``server_thread`` on another (skip with fewer than two)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs two CPUs: the spin declines next to its peer")
    server = next(t for t in threading.enumerate() if t.name == server_thread)
    assert server.native_id is not None
    os.sched_setaffinity(server.native_id, {cpus[1]})
    os.sched_setaffinity(0, {cpus[0]})  # 0: the calling thread only (Linux)


@pytest.fixture(autouse=True)
def _restore_affinity() -> Iterator[None]:
    cpus = os.sched_getaffinity(0)
    yield
    os.sched_setaffinity(0, cpus)


@pytest.mark.skipif(not NATIVE, reason="tether.wire._native is not built")
@pytest.mark.parametrize("kind", ["unix-timeout", "unix-blocking"])
def test_a_call_polls_for_its_reply_after_sending(kind: str, tmp_path: Path) -> None:
    with connected(kind, tmp_path, spin=30.0) as connection:
        transport = connection._transport
        assert isinstance(transport, SpinningTransport)
        tree = build_client_tree(connection.server_meta["report"], connection, ClientPolicy())
        # Answered while the reader polled, so no skip follows. The helper declines to spin
        # next to a peer on its own CPU, and a spin preempted on a busy machine stops: put the
        # two threads on two CPUs, and one answer of 20 in the spin suffices.
        _pin_apart("spin-test-server")
        answered_in_spin = 0
        for _ in range(20):
            transport._skip = 0
            assert tree.call("value") == 42
            answered_in_spin += transport._skip == 0
            if answered_in_spin:
                break
        assert answered_in_spin
        transport.spin = 0.001
        assert tree.call("slowly") == 7  # not within 1 ms: the next reads block at once
        assert transport._skip == SPIN_SKIP
        assert tree.call("value") == 42
        assert transport._skip == SPIN_SKIP - 1
