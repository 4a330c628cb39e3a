"""The TFTP codec and transfer state machine, byte by byte (no sockets)."""

from __future__ import annotations

import struct

import pytest

from tether.drivers.netboot import (
    Ack,
    Data,
    ErrorPacket,
    OptionAck,
    ReadRequest,
    ReadTransfer,
    TftpPacketError,
    TransferPolicy,
    WriteRequest,
)
from tether.drivers.netboot._tftp_packets import encode, parse


def ack(block: int) -> bytes:
    return struct.pack(">HH", 4, block)


def transfer(data: bytes, **options: str) -> ReadTransfer:
    request = ReadRequest("f", "octet", options)
    return ReadTransfer(request, len(data), lambda off, n: data[off : off + n])


def blocks(datagrams: list[bytes]) -> list[tuple[int, bytes]]:
    out = []
    for datagram in datagrams:
        packet = parse(datagram)
        assert isinstance(packet, Data)
        out.append((packet.block, bytes(packet.payload)))
    return out


def test_packets_round_trip() -> None:
    for packet in [
        ReadRequest("boot/vmlinuz", "octet", {"blksize": "1468", "tsize": "0"}),
        WriteRequest("x", "octet", {}),
        Data(7, b"abc"),
        Ack(65535),
        ErrorPacket(1, "file not found"),
        OptionAck({"blksize": "1468"}),
    ]:
        decoded = parse(encode(packet))
        if isinstance(packet, Data):
            assert isinstance(decoded, Data) and bytes(decoded.payload) == b"abc"
        else:
            assert decoded == packet


def test_request_on_the_wire() -> None:
    assert (
        encode(ReadRequest("a", "octet", {"tsize": "0"})) == b"\x00\x01a\x00octet\x00tsize\x000\x00"
    )
    assert parse(b"\x00\x01A\x00OCTET\x00BLKSIZE\x00512\x00") == ReadRequest(
        "A", "octet", {"blksize": "512"}
    )


@pytest.mark.parametrize(
    "datagram",
    [
        b"",
        b"\x00",
        b"\x00\x09",
        b"\x00\x01name",
        b"\x00\x01\x00octet\x00",
        b"\x00\x04\x00",
        b"\x00\x01a\x00weird\x00",
        b"\x00\x01a\x00octet\x00blksize\x00",
    ],
)
def test_malformed_packets(datagram: bytes) -> None:
    with pytest.raises(TftpPacketError):
        parse(datagram)


def test_block_numbers_are_16_bit() -> None:
    with pytest.raises(TftpPacketError):
        Ack(65536)


def test_lock_step_without_options() -> None:
    data = bytes(range(256)) * 5  # 1280 bytes: blocks of 512, 512, 256
    t = transfer(data)
    step = t.start()
    assert blocks(step.send) == [(1, data[:512])]
    assert step.timer == 1.0
    assert blocks(t.receive(ack(1)).send) == [(2, data[512:1024])]
    assert blocks(t.receive(ack(2)).send) == [(3, data[1024:])]
    done = t.receive(ack(3))
    assert done.send == [] and done.timer is None and t.finished and t.error is None


def test_exact_multiple_ends_with_an_empty_block() -> None:
    t = transfer(b"x" * 1024)
    t.start()
    t.receive(ack(1))
    assert blocks(t.receive(ack(2)).send) == [(3, b"")]
    assert t.receive(ack(3)).timer is None


def test_empty_file() -> None:
    t = transfer(b"")
    assert blocks(t.start().send) == [(1, b"")]
    assert t.receive(ack(1)).timer is None


def test_options_are_negotiated_in_an_oack() -> None:
    t = transfer(b"y" * 3000, blksize="1000", tsize="0", timeout="3", windowsize="2", foo="1")
    step = t.start()
    assert parse(step.send[0]) == OptionAck(
        {"blksize": "1000", "tsize": "3000", "timeout": "3", "windowsize": "2"}
    )
    assert step.timer == 3.0
    window = t.receive(ack(0))
    assert [b for b, _ in blocks(window.send)] == [1, 2]
    assert [b for b, _ in blocks(t.receive(ack(2)).send)] == [3, 4]  # 4 is the empty one
    assert t.receive(ack(4)).timer is None


def test_limits_and_bad_values() -> None:
    policy = TransferPolicy(max_blksize=1468, max_windowsize=4)
    request = ReadRequest("f", "octet", {"blksize": "65464", "windowsize": "100", "timeout": "0"})
    t = ReadTransfer(request, 10, lambda off, n: b"z" * n, policy)
    assert parse(t.start().send[0]) == OptionAck({"blksize": "1468", "windowsize": "4"})
    bad = ReadTransfer(ReadRequest("f", "octet", {"blksize": "7"}), 10, lambda o, n: b"z" * n)
    assert blocks(bad.start().send) == [(1, b"z" * 10)]  # ignored: plain DATA at once


def test_duplicate_ack_is_ignored_in_lock_step() -> None:
    t = transfer(b"a" * 2000)
    t.start()
    t.receive(ack(1))
    assert t.receive(ack(1)).send == []  # the Sorcerer's Apprentice bug avoided
    assert blocks(t.timeout().send)[0][0] == 2  # the timer resends
    assert t.retransmits == 1


def test_partial_window_ack_resends_from_the_gap() -> None:
    t = transfer(b"b" * 5000, blksize="512", windowsize="4")
    t.start()
    assert [b for b, _ in blocks(t.receive(ack(0)).send)] == [1, 2, 3, 4]
    assert [b for b, _ in blocks(t.receive(ack(2)).send)] == [3, 4, 5, 6]


def test_timeouts_give_up_with_an_error() -> None:
    t = ReadTransfer(ReadRequest("f"), 10, lambda o, n: b"c" * n, TransferPolicy(retries=2))
    t.start()
    assert len(t.timeout().send) == 1
    assert len(t.timeout().send) == 1
    last = t.timeout()
    assert last.timer is None and t.finished
    packet = parse(last.send[0])
    assert isinstance(packet, ErrorPacket) and "retries" in packet.message


def test_oack_is_resent_on_timeout() -> None:
    t = transfer(b"d", tsize="0")
    first = t.start().send
    assert t.timeout().send == first


def test_client_error_ends_the_transfer() -> None:
    t = transfer(b"e" * 600, blksize="100")
    t.start()
    step = t.receive(encode(ErrorPacket(8, "no thanks")))
    assert step.send == [] and step.timer is None
    assert t.error is not None and "no thanks" in t.error


def test_illegal_packet_gets_an_error() -> None:
    t = transfer(b"f" * 600)
    t.start()
    step = t.receive(encode(Data(1, b"x")))
    packet = parse(step.send[0])
    assert isinstance(packet, ErrorPacket) and packet.code == 4
    assert t.finished
    assert t.receive(ack(1)) == step.__class__([], None)  # over: later datagrams are ignored


def test_block_numbers_roll_over() -> None:
    data = bytes(range(256)) * 2049  # 524544 bytes: 65568 blocks of 8
    t = transfer(data, blksize="8")
    t.start()
    step = t.receive(ack(0))
    received = bytearray()
    expected_block = 1
    while step.timer is not None:
        ((block, payload),) = blocks(step.send)
        assert block == expected_block & 0xFFFF
        received += payload
        step = t.receive(ack(block))
        expected_block += 1
    assert bytes(received) == data
    assert expected_block - 1 == len(data) // 8 + 1


def test_stale_ack_after_roll_over_is_ignored() -> None:
    t = transfer(b"g" * 80, blksize="8")
    t.start()
    t.receive(ack(0))
    assert t.receive(ack(60000)).send == []


@pytest.mark.parametrize(("size", "windowsize"), [(5000, "1"), (5000, "3"), (3 * 512, "2")])
def test_acknowledge_catches_up_as_receive_would(size: int, windowsize: str) -> None:
    data = bytes(range(256)) * (size // 256) + b"q" * (size % 256)
    by_receive = transfer(data, blksize="512", windowsize=windowsize)
    by_catch_up = transfer(data, blksize="512", windowsize=windowsize)
    for t in (by_receive, by_catch_up):
        t.start()
        t.receive(ack(0))
    ends = []  # the last block of each window, as the fast path answers them
    while (window := by_receive.window()) is not None:
        ends.append(window[1])
        by_receive.receive(ack(window[1]))
    assert by_receive.finished
    for acked in ends[:-1]:
        middle = transfer(data, blksize="512", windowsize=windowsize)
        middle.start()
        middle.receive(ack(0))
        while (window := middle.window()) is not None and window[1] <= acked:
            middle.receive(ack(window[1]))
        caught_up = transfer(data, blksize="512", windowsize=windowsize)
        caught_up.start()
        caught_up.receive(ack(0))
        assert caught_up.acknowledge(acked) == middle.window()
        assert caught_up.sent_bytes == middle.sent_bytes
        assert caught_up.state == middle.state
        assert caught_up.timeout().send == middle.timeout().send  # the same window again
    assert by_catch_up.acknowledge(ends[-1]) is None
    assert by_catch_up.finished and by_catch_up.error is None
    assert by_catch_up.sent_bytes == by_receive.sent_bytes == size


def test_acknowledge_refuses_what_ends_no_window() -> None:
    t = transfer(b"h" * 5000, blksize="512", windowsize="4")
    t.start()
    with pytest.raises(RuntimeError, match="oack-sent"):
        t.acknowledge(4)  # the OACK is not answered yet
    t.receive(ack(0))
    assert t.window() == (1, 4)
    for bad in (3, 6, 11):  # inside the window, inside the next one, past the end
        with pytest.raises(RuntimeError, match=f"acknowledge\\({bad}\\)"):
            t.acknowledge(bad)
    assert t.acknowledge(8) == (9, 10)
    assert t.acknowledge(10) is None and t.window() is None


def test_the_protocol_core_does_no_io() -> None:
    import ast
    from pathlib import Path

    import tether.drivers.netboot as netboot

    folder = Path(netboot.__file__).parent
    for module in ("_tftp_packets.py", "_tftp_protocol.py"):
        imported: set[str] = set()
        for node in ast.walk(ast.parse((folder / module).read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                imported.add((node.module or "").split(".")[0])
        assert not imported & {"asyncio", "socket", "ssl", "select", "threading"}, module


def test_public_names() -> None:
    import tether.drivers.netboot as netboot

    for name in ("TftpServer", "HttpServer", "DutNetwork", "FileServerClient", "NetbootError"):
        assert name in netboot.__all__ and hasattr(netboot, name)
    for name in netboot.__all__:
        assert hasattr(netboot, name)
