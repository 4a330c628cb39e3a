"""REAL SOCKETS: the blocking client under full-duplex byte streams, connection failures and
rejected handshakes, over a unix socket pair (``serve()``) and over TLS on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from tether import Driver, export_stream
from tether.driver import ClientPolicy, DriverHost, build_client_tree
from tether.errors import AuthenticationFailed, ConnectionLost, SessionLost
from tether.security import client_ssl_context, init_lab_certs, server_ssl_context
from tether.testing import serve
from tether.testing._serve import LocalSession
from tether.wire import (
    DEFAULT_WINDOW,
    ClientConnection,
    LoopThread,
    ServerProtocol,
    connect_socket,
    parse_address,
)

BLOCK = 256 * 1024
PIPE_LIMIT = 1 << 20


class _Pipe:
    """A byte stream that hands back what it was sent, holding at most about PIPE_LIMIT."""

    def __init__(self, driver: Echo) -> None:
        self._driver = driver
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._changed = asyncio.Condition()

    async def send(self, data: bytes) -> None:
        self._driver.received.set()
        async with self._changed:
            await self._changed.wait_for(lambda: self._size < PIPE_LIMIT)
            self._chunks.append(data)
            self._size += len(data)
            self._changed.notify_all()

    async def send_eof(self) -> None:
        async with self._changed:
            self._eof = True
            self._changed.notify_all()

    async def receive(self) -> bytes:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._chunks) or self._eof)
            if not self._chunks:
                return b""
            data = self._chunks.popleft()
            self._size -= len(data)
            self._changed.notify_all()
            return data


class _Sink:
    """Takes the first chunk, then never reads again: the client's window runs out."""

    def __init__(self, driver: Echo) -> None:
        self._driver = driver

    async def send(self, data: bytes) -> None:
        self._driver.received.set()
        await asyncio.Event().wait()

    async def receive(self) -> bytes:
        await asyncio.Event().wait()
        return b""


class Echo(Driver):
    def __init__(self) -> None:
        super().__init__()
        self.received = threading.Event()

    @export_stream
    @asynccontextmanager
    async def echo(self) -> AsyncIterator[_Pipe]:
        yield _Pipe(self)

    @export_stream
    @asynccontextmanager
    async def stuck(self) -> AsyncIterator[_Sink]:
        yield _Sink(self)


# -- the two ways in: serve() over a socket pair, and TLS on loopback --------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return init_lab_certs(tmp_path_factory.mktemp("certs"))


class Served:
    """A client tree for ``driver`` and a way to cut the connection from the server side."""

    def __init__(self, client: Any, cut: Callable[[], None]) -> None:
        self.client = client
        self.cut = cut


@contextmanager
def over_tls(driver: Driver, ca: Path, cert: Path, key: Path) -> Iterator[Served]:
    loop_thread = LoopThread("tls-test-server")
    host = DriverHost(driver, "root")
    session = LocalSession(host)

    async def start() -> asyncio.Server:
        await host.start()
        return await asyncio.get_running_loop().create_server(
            lambda: ServerProtocol(session.resolve),
            "127.0.0.1",
            0,
            ssl=server_ssl_context(cert, key),
        )

    async def stop() -> None:
        for protocol in list(session.protocols):
            protocol.close()
        server.close()
        await server.wait_closed()
        await host.stop()

    def cut() -> None:
        for protocol in list(session.protocols):
            loop_thread.loop.call_soon_threadsafe(protocol.close)

    server = loop_thread.run(start())
    try:
        port = server.sockets[0].getsockname()[1]
        sock = connect_socket(
            parse_address(f"tls://localhost:{port}"), ssl_context=client_ssl_context(ca)
        )
        connection = ClientConnection(sock, keepalive=None)
        try:
            yield Served(
                build_client_tree(connection.server_meta["report"], connection, ClientPolicy()),
                cut,
            )
        finally:
            connection.close()
    finally:
        loop_thread.run(stop())
        loop_thread.close()


@contextmanager
def over_serve(driver: Driver) -> Iterator[Served]:
    with serve(driver) as client:
        connection = client._target  # type: ignore[attr-defined]
        transport: Any = connection._transport
        yield Served(client, lambda: transport.sock.shutdown(socket.SHUT_RDWR))


@pytest.fixture(params=["serve", "tls"])
def served(request: pytest.FixtureRequest, certs: Any) -> Callable[[Driver], Any]:
    def open_(driver: Driver) -> AbstractContextManager[Served]:
        if request.param == "serve":
            return over_serve(driver)
        return over_tls(driver, certs.ca, certs.server_cert, certs.server_key)

    return open_


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``fn`` on a thread; the list gets its result or its exception."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(fn())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


# -- full duplex --------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_one_thread_sends_16_mib_while_another_receives_the_echo(
    served: Callable[[Driver], AbstractContextManager[Served]],
) -> None:
    payload = os.urandom(16 * 1024 * 1024)
    with served(Echo()) as lab, lab.client.stream("echo") as stream:

        def send_all() -> None:
            for start in range(0, len(payload), BLOCK):
                stream.send(payload[start : start + BLOCK])
            stream.send_eof()

        sender, outcome = in_thread(send_all)
        received = hashlib.sha256()
        size = 0
        while chunk := stream.receive():
            received.update(chunk)
            size += len(chunk)
        sender.join()
    assert outcome == [None]
    assert size == len(payload)
    assert received.hexdigest() == hashlib.sha256(payload).hexdigest()


@pytest.mark.timeout(60)
def test_a_slow_receiver_holds_the_sender_back(
    served: Callable[[Driver], AbstractContextManager[Served]],
) -> None:
    """The receiver starts reading only once the sender is well past one window; the sender
    can never run further ahead than the windows and the driver's buffer allow."""
    total = 64 * 1024 * 1024
    ahead_limit = 4 * DEFAULT_WINDOW + 2 * PIPE_LIMIT  # both windows, the pipe, chunks in hand
    block = os.urandom(BLOCK)
    sent = [0]
    received = [0]
    max_ahead = [0]
    ahead = threading.Event()
    with served(Echo()) as lab, lab.client.stream("echo") as stream:

        def send_all() -> None:
            while sent[0] < total:
                stream.send(block)
                sent[0] += BLOCK
                max_ahead[0] = max(max_ahead[0], sent[0] - received[0])
                if sent[0] >= DEFAULT_WINDOW + 2 * BLOCK:
                    ahead.set()
            stream.send_eof()

        sender, outcome = in_thread(send_all)
        assert ahead.wait(30), outcome
        first_read_at = sent[0]
        digest = hashlib.sha256()
        while chunk := stream.receive():
            digest.update(chunk)
            received[0] += len(chunk)
        sender.join()
    assert outcome == [None]
    assert first_read_at <= ahead_limit
    assert max_ahead[0] <= ahead_limit
    assert received[0] == total
    assert digest.hexdigest() == hashlib.sha256(block * (total // BLOCK)).hexdigest()


@pytest.mark.timeout(60)
def test_a_lost_connection_wakes_both_the_blocked_sender_and_the_receiver(
    served: Callable[[Driver], AbstractContextManager[Served]],
) -> None:
    driver = Echo()
    with served(driver) as lab, lab.client.stream("stuck") as stream:

        def send_forever() -> None:
            block = bytes(BLOCK)
            while True:  # the driver stops reading: the window runs out and send() blocks
                stream.send(block)

        sender, sent = in_thread(send_forever)
        receiver, received = in_thread(stream.receive)
        assert driver.received.wait(30)
        lab.cut()
        sender.join(30)
        receiver.join(30)
        assert not sender.is_alive() and not receiver.is_alive()
        assert [type(exc) for exc in sent + received] == [ConnectionLost, ConnectionLost]
        stream.abort()


# -- handshake ----------------------------------------------------------------------------------


def test_a_rejected_token_raises_authentication_failed_itself() -> None:
    loop_thread = LoopThread("auth-test-server")
    client_sock, server_sock = socket.socketpair()

    async def reject(meta: dict[str, Any]) -> Any:
        raise AuthenticationFailed(f"unknown token {meta.get('token')!r}")

    async def start() -> Any:
        _, protocol = await asyncio.get_running_loop().connect_accepted_socket(
            lambda: ServerProtocol(reject), server_sock
        )
        return protocol

    protocol = loop_thread.run(start())
    try:
        with pytest.raises(AuthenticationFailed, match="unknown token 'nobody'") as info:
            ClientConnection(client_sock, meta={"token": "nobody"}, keepalive=None)
        assert type(info.value) is AuthenticationFailed
        assert client_sock.fileno() == -1  # the client closed its socket
    finally:
        loop_thread.loop.call_soon_threadsafe(protocol.close)
        loop_thread.close()


@pytest.mark.parametrize(
    ("refusal", "expected"),
    [
        (SessionLost("the exporter restarted; the session S is gone"), SessionLost),
        (AuthenticationFailed("no open session 'S'"), AuthenticationFailed),
    ],
)
def test_a_refused_session_crosses_the_handshake_as_its_own_error(
    refusal: Exception, expected: type[Exception]
) -> None:
    """The resolver's SessionLost reaches the client as SessionLost (GOAWAY session_lost),
    not as a failed authentication."""
    loop_thread = LoopThread("session-lost-server")
    client_sock, server_sock = socket.socketpair()

    async def refuse(meta: dict[str, Any]) -> Any:
        raise refusal

    async def start() -> Any:
        _, protocol = await asyncio.get_running_loop().connect_accepted_socket(
            lambda: ServerProtocol(refuse), server_sock
        )
        return protocol

    protocol = loop_thread.run(start())
    try:
        with pytest.raises(expected) as info:
            ClientConnection(client_sock, meta={"session": "S"}, keepalive=None)
        assert type(info.value) is expected and str(info.value) == str(refusal)
    finally:
        loop_thread.loop.call_soon_threadsafe(protocol.close)
        loop_thread.close()
