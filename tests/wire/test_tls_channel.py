"""``TLSChannel`` against a real TLS peer (``ssl.SSLSocket`` on a thread), on loopback: the
read paths (a plain read first on a socket with a time-out, poll() when that finds nothing),
records decrypted together, and the end of the stream."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tether.security import client_ssl_context, init_lab_certs, server_ssl_context
from tether.wire._tls import _EAGER_RETRY, TLSChannel


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return init_lab_certs(tmp_path_factory.mktemp("certs"))


@contextmanager
def tls_pair(certs: Any) -> Iterator[tuple[TLSChannel, Any]]:
    """A TLSChannel and the server's SSLSocket, connected."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[Any] = []

    def accept() -> None:
        sock, _ = listener.accept()
        accepted.append(
            server_ssl_context(certs.server_cert, certs.server_key).wrap_socket(
                sock, server_side=True
            )
        )

    thread = threading.Thread(target=accept)
    thread.start()
    raw = socket.create_connection(listener.getsockname())
    channel = TLSChannel(raw, client_ssl_context(certs.ca), "localhost")
    thread.join()
    listener.close()
    try:
        yield channel, accepted[0]
    finally:
        channel.close()
        accepted[0].close()


def recv_exactly(channel: TLSChannel, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = channel.recv(size - len(data))
        assert chunk, "unexpected end of stream"
        data += chunk
    return data


def test_ping_pong_with_a_timeout_reads_every_answer(certs: Any) -> None:
    """Answers that are there at once and answers that come later (after the client has
    started waiting) both arrive whole, through the plain read and the poll() path."""
    with tls_pair(certs) as (channel, server):
        channel.settimeout(5.0)
        for i in range(3 * _EAGER_RETRY):
            message = f"ping {i}".encode()
            channel.send(message)
            got = b""
            while len(got) < len(message):
                got += server.recv(1024)
            assert got == message
            if i % 2:
                server.sendall(b"pong %d" % i)
                assert recv_exactly(channel, len(b"pong %d" % i)) == b"pong %d" % i
            else:
                # Most often sent once the client waits already (a plain read found nothing).
                answer = threading.Thread(target=server.sendall, args=[b"late %d" % i])
                answer.start()
                assert recv_exactly(channel, len(b"late %d" % i)) == b"late %d" % i
                answer.join()


def test_a_plain_read_that_finds_nothing_falls_back_to_poll(certs: Any) -> None:
    with tls_pair(certs) as (channel, server):
        channel.settimeout(0.05)
        with pytest.raises(TimeoutError):  # the poll() path, after the plain read
            channel.recv(100)
        skipping = channel._skip_eager
        assert 0 < skipping <= _EAGER_RETRY
        server.sendall(b"after")
        assert recv_exactly(channel, 5) == b"after"  # through poll(), not the plain read
        assert channel._skip_eager == skipping - 1


def test_many_records_come_back_in_few_reads(certs: Any) -> None:
    payload = bytes(range(256)) * 2048  # 512 KiB: 32 TLS records
    with tls_pair(certs) as (channel, server):
        channel.settimeout(5.0)
        sender = threading.Thread(target=server.sendall, args=(payload,))
        sender.start()
        received = bytearray()
        reads = 0
        while len(received) < len(payload):
            chunk = channel.recv(1 << 20)
            assert chunk
            received += chunk
            reads += 1
        sender.join()
        assert bytes(received) == payload
        assert reads < 32  # several records per recv(), not one each


def test_blocking_socket_and_end_of_stream(certs: Any) -> None:
    with tls_pair(certs) as (channel, server):
        channel.settimeout(None)
        server.sendall(b"last words")
        assert recv_exactly(channel, 10) == b"last words"
        server.shutdown(socket.SHUT_RDWR)
        assert channel.recv(100) == b""


def test_nothing_to_read_without_waiting(certs: Any) -> None:
    with tls_pair(certs) as (channel, server):
        channel.settimeout(5.0)
        with pytest.raises(BlockingIOError):  # at once, not after the 5 s time-out
            channel.recv(100, socket.MSG_DONTWAIT)
        server.sendall(b"now")
        assert recv_exactly(channel, 3) == b"now"
