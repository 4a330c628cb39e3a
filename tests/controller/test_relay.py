"""The router relay on loopback (real sockets, real TLS): pairing, splicing, per-lease
authorisation, cutting connections when the lease ends, and bad dials."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from relaylab import RelayLab
from tether import Driver, export_stream
from tether.client import dial_relay
from tether.drivers.composite import Composite
from tether.drivers.power import MockPower
from tether.errors import AuthenticationFailed, ConnectionLost, RelayRefused
from tether.wire._relay import RelayHello, decode_relay_reply, encode_relay_hello


class _Pipe:
    """A byte stream that hands back what it was sent."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=64)

    async def send(self, data: bytes) -> None:
        await self.queue.put(data)

    async def send_eof(self) -> None:
        await self.queue.put(b"")

    async def receive(self) -> bytes:
        return await self.queue.get()


class Echo(Driver):
    @export_stream
    @asynccontextmanager
    async def echo(self) -> AsyncIterator[_Pipe]:
        yield _Pipe()


def make_tree() -> Driver:
    return Composite(children={"power": MockPower(), "echo": Echo()})


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[RelayLab]:
    with RelayLab(tmp_path, pair_timeout=5.0) as lab:
        yield lab


@pytest.fixture
def tcp_lab(tmp_path: Path) -> Iterator[RelayLab]:
    with RelayLab(tmp_path, tls=False, pair_timeout=0.3) as lab:
        yield lab


def raw_dial(lab: RelayLab, line: bytes) -> tuple[socket.socket, bytes]:
    """Send ``line`` to a plain-TCP relay; return the socket and everything it answered."""
    host, port = lab.url.removeprefix("tcp://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(line)
    answer = b""
    while chunk := sock.recv(4096):
        answer += chunk
    return sock, answer


def test_calls_through_the_relay_reach_the_leased_tree(lab: RelayLab) -> None:
    lab.add_lease("L1", make_tree)
    dut = lab.connect("L1")
    dut.power.on()
    assert dut.power.status() is True
    # The exporter dialled again after the first pairing: a second client gets a connection
    # to the same session.
    other = lab.connect("L1")
    assert other.power.status() is True
    assert lab.leases["L1"].relay is not None and lab.leases["L1"].relay.served == 2


def test_byte_stream_through_the_relay_arrives_intact(lab: RelayLab) -> None:
    lab.add_lease("L1", make_tree)
    dut = lab.connect("L1")
    payload = os.urandom(8 * 1024 * 1024)
    received = bytearray()
    block = 256 * 1024
    failures: list[BaseException] = []
    with dut.echo.stream("echo") as stream:
        # Full duplex: one thread sends everything while this one receives the echo.
        def send_all() -> None:
            try:
                for start in range(0, len(payload), block):
                    stream.send(payload[start : start + block])
                stream.send_eof()
            except BaseException as exc:
                failures.append(exc)

        sender = threading.Thread(target=send_all)
        sender.start()
        while chunk := stream.receive():
            received.extend(chunk)
        sender.join()
    assert failures == []
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(payload).hexdigest()


def test_unknown_token_is_unauthenticated_and_the_relay_keeps_serving(lab: RelayLab) -> None:
    lab.add_lease("L1", make_tree)
    with pytest.raises(AuthenticationFailed, match="unknown token"):
        lab.connect("L1", token="nobody")
    assert lab.connect("L1").power.status() is False


def test_only_the_lease_holder_is_spliced(lab: RelayLab) -> None:
    lab.add_lease("L1", make_tree)
    lab.add_lease("L2", None, client_token="bob-token", exporter_token="bench-2-token")
    with pytest.raises(RelayRefused, match="not the client of lease L1") as info:
        lab.connect("L1", token="bob-token")
    assert info.value.code == "forbidden"
    # An exporter's token cannot dial in as the client of its own lease either.
    with pytest.raises(RelayRefused, match="not the client"):
        lab.connect("L1", token="exporter-token")
    assert lab.connect("L1").power.status() is False


def test_ending_the_lease_cuts_its_connections_and_refuses_new_dials(lab: RelayLab) -> None:
    lease = lab.add_lease("L1", make_tree)
    dut = lab.connect("L1")
    dut.power.on()
    assert lab.end_lease("L1") == 1
    with pytest.raises(ConnectionLost):
        dut.power.status()
    with pytest.raises(RelayRefused, match="ended") as info:
        lab.connect("L1")
    assert info.value.code == "lease_ended"
    # The exporter's idle dial was refused with lease_ended too, so its relay loop returned.
    assert lease.task is not None
    lab.exporter_thread.run(asyncio.wait_for(asyncio.shield(lease.task), 5))
    assert lease.task.done() and lease.task.exception() is None


def test_ending_one_lease_leaves_the_others_alone(lab: RelayLab) -> None:
    lab.add_lease("L1", make_tree)
    lab.add_lease("L2", make_tree, client_token="bob", exporter_token="bench-2", exporter="b2")
    first, second = lab.connect("L1"), lab.connect("L2")
    assert lab.end_lease("L1") == 1
    with pytest.raises(ConnectionLost):
        first.power.status()
    assert second.power.status() is False


def test_a_client_without_an_exporter_dial_is_told_so(tcp_lab: RelayLab) -> None:
    tcp_lab.add_lease("L1", None)
    tcp_lab.add_lease("L2", make_tree, client_token="bob", exporter_token="e2")
    # L2's exporter dial waits at the router; L1's client must not get it.
    with pytest.raises(RelayRefused, match="no connection from the exporter") as info:
        tcp_lab.connect("L1")
    assert info.value.code == "exporter_unavailable"
    assert tcp_lab.connect("L2").power.status() is False


def test_a_client_that_dials_first_waits_for_the_exporter(tcp_lab: RelayLab) -> None:
    tcp_lab.router.pair_timeout = 10.0
    tcp_lab.add_lease("L1", None)
    tcp_lab.leases["L1"].exporter_token = "exporter-token"
    result: list[object] = []

    def client() -> None:
        try:
            result.append(dial_relay(tcp_lab.url, "L1", "client-token", timeout=10))
        except Exception as exc:
            result.append(exc)

    thread = threading.Thread(target=client)
    thread.start()
    # A raw exporter dial: told "waiting" (or straight "paired" if the client came first).
    sock = socket.create_connection(tuple(_host_port(tcp_lab.url)), timeout=10)
    sock.sendall(encode_relay_hello(RelayHello("L1", "exporter", "exporter-token")))
    lines = _read_lines(sock, until=b'"paired"')
    thread.join(10)
    assert any(decode_relay_reply(line).state == "paired" for line in lines)
    client_sock, reply = result[0]  # type: ignore[misc]
    assert reply.state == "paired" and reply.info["exporter"] == "bench-1"
    client_sock.sendall(b"hello exporter")
    assert _recv_exactly(sock, 14) == b"hello exporter"
    sock.sendall(b"hi client")
    assert _recv_exactly(client_sock, 9) == b"hi client"
    client_sock.close()
    assert sock.recv(10) == b""  # the pair ends together
    sock.close()


def test_a_bad_preamble_is_answered_and_closed(tcp_lab: RelayLab) -> None:
    sock, answer = raw_dial(tcp_lab, b"GET / HTTP/1.1\r\n\r\n")
    sock.close()
    reply = decode_relay_reply(answer.strip())
    assert not reply.ok and reply.code == "bad_preamble" and "TETHER-RELAY" in reply.message
    sock, answer = raw_dial(tcp_lab, b'TETHER-RELAY/2 {"lease": 1}\n')
    sock.close()
    reply = decode_relay_reply(answer.strip())
    assert reply.code == "bad_preamble" and "lease" in reply.message


def test_an_endless_preamble_is_cut_off(tcp_lab: RelayLab) -> None:
    sock, answer = raw_dial(tcp_lab, b"TETHER-RELAY/2 " + b"x" * 10000)
    sock.close()
    reply = decode_relay_reply(answer.strip())
    assert reply.code == "bad_preamble" and "longer than" in reply.message


def test_tls_is_required_when_the_relay_speaks_tls(lab: RelayLab) -> None:
    lab.add_lease("L1", make_tree)
    host, port = _host_port(lab.url)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(encode_relay_hello(RelayHello("L1", "client", "client-token")))
        data = sock.recv(4096)
    assert b"paired" not in data  # plaintext never gets through a TLS listener


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.split("://", 1)[1].split(":")
    return host, int(port)


def _read_lines(sock: socket.socket, until: bytes) -> list[bytes]:
    buffer = b""
    while until not in buffer:
        chunk = sock.recv(4096)
        assert chunk, f"relay closed; got {buffer!r}"
        buffer += chunk
    return [line for line in buffer.split(b"\n") if line]


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk
        data += chunk
    return data


def test_a_slow_reader_pauses_the_writer_and_memory_stays_bounded(
    tcp_lab: RelayLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tether.controller import _relay

    paused = threading.Event()
    pause_writing = _relay._Side.pause_writing

    def noting_pause(side: _relay._Side) -> None:
        pause_writing(side)
        paused.set()

    monkeypatch.setattr(_relay._Side, "pause_writing", noting_pause)
    tcp_lab.add_lease("L1", None)
    exporter = socket.create_connection(_host_port(tcp_lab.url), timeout=10)
    exporter.sendall(encode_relay_hello(RelayHello("L1", "exporter", "exporter-token")))
    assert _read_lines(exporter, until=b'"waiting"')
    client, _ = dial_relay(tcp_lab.url, "L1", "client-token", timeout=10)
    assert _read_lines(exporter, until=b'"paired"')

    payload = os.urandom(24 * 1024 * 1024)  # more than the router and the kernel buffer
    sender = threading.Thread(target=exporter.sendall, args=(payload,))
    sender.start()
    assert paused.wait(10)  # the client reads nothing: the router stops reading the exporter

    async def buffered() -> tuple[int, bool]:
        [pair] = tcp_lab.router._pairs.values()
        to_client = next(side for side in pair if side.hello and side.hello.role == "client")
        from_exporter = to_client.peer
        assert to_client.transport is not None and from_exporter is not None
        assert from_exporter.transport is not None
        reading = from_exporter.transport.is_reading()  # type: ignore[attr-defined]
        return to_client.transport.get_write_buffer_size(), reading

    size, reading = tcp_lab.router_thread.run(buffered())
    assert size <= 8 * 1024 * 1024 and not reading
    received = bytearray()
    while len(received) < len(payload):
        received += client.recv(1 << 20)
    sender.join(10)
    assert hashlib.sha256(received).digest() == hashlib.sha256(payload).digest()
    client.close()
    exporter.close()
