"""The TFTP fast path (``_tftp_fast``): its block buffer, and the same datagrams on the wire as
the reference loop, lost ACKs and gaps included (real UDP sockets on 127.0.0.1)."""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _tftp_loops import LOOPS

from tether.drivers.netboot import ReadRequest, ReadTransfer, TftpServer
from tether.drivers.netboot._tftp_fast import BlockBuffer
from tether.drivers.netboot._tftp_packets import encode
from tether.testing import serve


def data_block(block: int, payload: bytes) -> bytes:
    return struct.pack(">HH", 3, block & 0xFFFF) + payload


def ack(block: int) -> bytes:
    return struct.pack(">HH", 4, block & 0xFFFF)


def unused(offset: int, size: int) -> bytes:
    raise AssertionError("the block buffer reads the file itself")


@pytest.mark.parametrize("size", [0, 100, 512 * 7, 512 * 7 + 1, 20_000, 512 * 3000])
@pytest.mark.parametrize("budget", [1, 3 * 516, 1 << 20])
def test_block_buffer_holds_the_file_block_by_block(tmp_path: Path, size: int, budget: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        machine = ReadTransfer(ReadRequest("f", "octet", {"blksize": "512"}), size, unused)
        machine.start()
        blocks = BlockBuffer(fd, machine, budget)
        last = size // 512 + 1
        order = [*range(1, last + 1), 1, last, *range(max(1, last - 2), last + 1)]
        assert blocks.count <= 1024  # a preadv takes no more buffers (IOV_MAX)
        for block in order:  # forward, then back to the start, then the end again
            offset = (block - 1) * 512
            assert bytes(blocks.datagram(block)) == data_block(block, data[offset : offset + 512])
    finally:
        os.close(fd)


def test_block_numbers_roll_over_in_the_buffer(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"r" * (8 * 65540))
    fd = os.open(path, os.O_RDONLY)
    try:
        machine = ReadTransfer(ReadRequest("f", "octet", {"blksize": "8"}), 8 * 65540, unused)
        machine.start()
        blocks = BlockBuffer(fd, machine)
        assert bytes(blocks.datagram(65535))[:4] == b"\x00\x03\xff\xff"
        assert bytes(blocks.datagram(65536))[:4] == b"\x00\x03\x00\x00"
        assert bytes(blocks.datagram(65541)) == b"\x00\x03\x00\x05"  # the empty final block
    finally:
        os.close(fd)


@pytest.fixture(params=LOOPS)
def server(request: pytest.FixtureRequest) -> Iterator[Any]:
    driver = TftpServer(
        host="127.0.0.1", port=0, timeout=1.0, retries=3, transfer_loop=request.param
    )
    with serve(driver) as client:
        yield client


class Board:
    """A scripted TFTP client: what it is sent, in order."""

    def __init__(self, server: Any, name: str, options: dict[str, str]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(10)
        port = int(server.address().rsplit(":", 1)[1])
        self.sock.sendto(encode(ReadRequest(name, "octet", options)), ("127.0.0.1", port))
        first, self.tid = self.sock.recvfrom(70000)
        self.got = [first]

    def receive(self, count: int) -> list[bytes]:
        out = [self.sock.recv(70000) for _ in range(count)]
        self.got += out
        return out

    def send(self, datagram: bytes) -> None:
        self.sock.sendto(datagram, self.tid)

    def nothing_more(self) -> bool:
        self.sock.settimeout(0.3)  # bounded: the transfer is over, nothing may come
        try:
            self.sock.recv(70000)
        except TimeoutError:
            return True
        return False


def test_windows_gaps_and_the_end_are_as_the_reference(server: Any) -> None:
    data = os.urandom(512 * 9 + 392)  # blocks 1-10, the last short
    server.put_bytes("f", data)
    board = Board(server, "f", {"blksize": "512", "windowsize": "4"})
    assert board.got[0].startswith(b"\x00\x06")  # OACK
    board.send(ack(0))

    def blocks(first: int, last: int) -> list[bytes]:
        return [data_block(b, data[(b - 1) * 512 : b * 512]) for b in range(first, last + 1)]

    assert board.receive(4) == blocks(1, 4)
    board.send(ack(4))
    assert board.receive(4) == blocks(5, 8)
    board.send(ack(6))  # 7 and 8 were lost: the window again from 7
    assert board.receive(4) == blocks(7, 10)
    board.send(ack(6))  # a late duplicate: the same window once more
    assert board.receive(4) == blocks(7, 10)
    board.send(ack(10))
    assert board.nothing_more()


def test_a_lost_ack_is_answered_by_the_timer(server: Any) -> None:
    data = os.urandom(3000)
    server.put_bytes("f", data)
    board = Board(server, "f", {"blksize": "1000"})
    board.send(ack(0))
    first = board.receive(1)
    board.send(ack(1))
    (second,) = board.receive(1)
    assert second == data_block(2, data[1000:2000])
    (again,) = board.receive(1)  # no ACK of block 2: after the timeout it comes again
    assert again == second
    board.send(ack(2))
    assert board.receive(1) == [data_block(3, data[2000:])]
    board.send(b"\x00\x05\x00\x00stop\x00")  # the client gives up: the transfer ends
    assert board.nothing_more()
    assert first == [data_block(1, data[:1000])]


def test_a_stray_packet_ends_the_transfer_with_an_error(server: Any) -> None:
    server.put_bytes("f", b"s" * 5000)
    board = Board(server, "f", {"blksize": "512"})
    board.send(ack(0))
    board.receive(1)
    board.send(ack(1))
    board.receive(1)
    board.send(data_block(1, b"x"))  # DATA to a read-only server
    (error,) = board.receive(1)
    assert error.startswith(b"\x00\x05\x00\x04") and b"illegal" in error
    assert board.nothing_more()


def test_a_request_beyond_max_transfers_is_refused() -> None:
    driver = TftpServer(host="127.0.0.1", port=0, max_transfers=1)
    with serve(driver) as client:
        client.put_bytes("f", b"t" * 2000)
        first = Board(client, "f", {"blksize": "512"})
        second = Board(client, "f", {"blksize": "512"})
        assert second.got[0].startswith(b"\x00\x05") and b"busy" in second.got[0]
        first.send(ack(0))
        for block in range(1, 5):
            (got,) = first.receive(1)
            assert got == data_block(block, b"t" * min(512, 2000 - (block - 1) * 512))
            first.send(ack(block))
        assert first.nothing_more()


def test_an_unknown_transfer_loop_is_a_clear_error() -> None:
    from tether.drivers.netboot import NetbootError, TftpService
    from tether.drivers.netboot._files import FileStore

    store = FileStore("tftp")
    try:
        with pytest.raises(NetbootError, match="no TFTP transfer loop 'turbo' here"):
            TftpService(store, transfer_loop="turbo")  # type: ignore[arg-type]
    finally:
        store.close()
