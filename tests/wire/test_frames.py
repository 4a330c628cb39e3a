"""``tether.wire._frames``: the codec, on its own and fed one byte at a time."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from pydantic import BaseModel

from tether.errors import LocalProtocolError, RemoteProtocolError
from tether.wire import (
    Call,
    Cancel,
    Connection,
    ConnectionClosed,
    Data,
    Error,
    Event,
    GoAway,
    Hello,
    Item,
    OpenStream,
    Ping,
    Pong,
    Result,
    Role,
    WindowUpdate,
)
from tether.wire._frames import HEADER, FrameDecoder, FrameType, encode_event, encode_value

from ._pair import drain

#: One of every event that travels, with payloads that exercise the msgpack types.
EVERY_EVENT: list[Event] = [
    Hello(1, {"window": 1 << 22, "max_frame": 1 << 20, "token": "tth_x", "report": [{"a": 1}]}),
    Call(1, "uuid-1", "power_on", [1, 2.5, None, True, "s", b"\x00\xff"], {"k": {"n": [1]}}),
    OpenStream(2, "uuid-2", "console", [], {"baud": 115200}),
    Result(1, {"nested": [1, {"x": b"y"}]}),
    Result(2),
    Item(3, [1, "two", 3.0]),
    Error(4, {"code": "driver_error", "message": "boom", "remote_type": "ValueError"}),
    Cancel(5),
    Data(6, b"\x00" * 100),
    Data(6, b"", end=True),
    Data(7, b"tail", end=True),
    WindowUpdate(8, 2**31 - 1),
    WindowUpdate(9, 1),
    Ping(b"\x01\x02\x03\x04\x05\x06\x07\x08"),
    Pong(b"\x01\x02\x03\x04\x05\x06\x07\x08"),
    GoAway(),
    GoAway("protocol_error", "frame of 9 bytes exceeds the limit"),
]

BIG = 1 << 24


def decode_all(data: bytes, *, max_payload: int = BIG, chunk: int | None = None) -> list[Event]:
    decoder = FrameDecoder(max_payload)
    events: list[Event] = []
    step = chunk or max(len(data), 1)
    for start in range(0, len(data), step):
        decoder.feed(data[start : start + step])
        while (frame := decoder.next_frame()) is not None:
            events.append(frame[0])
    assert decoder.buffered == 0
    return events


def raw_frame(ftype: int, payload: bytes, *, stream_id: int = 0, flags: int = 0) -> bytes:
    return HEADER.pack(len(payload), ftype, flags, stream_id) + payload


def decode_one(data: bytes) -> Event:
    decoder = FrameDecoder(BIG)
    decoder.feed(data)
    frame = decoder.next_frame()
    assert frame is not None
    return frame[0]


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: type(e).__name__)
def test_every_event_round_trips(event: Event) -> None:
    assert decode_all(encode_event(event)) == [event]


def test_every_frame_type_is_covered() -> None:
    names = {encode_event(event)[4] for event in EVERY_EVENT}
    assert names == {int(t) for t in FrameType}


def test_a_stream_of_every_event_round_trips_whole_and_one_byte_at_a_time() -> None:
    data = b"".join(encode_event(event) for event in EVERY_EVENT)
    assert decode_all(data) == EVERY_EVENT
    assert decode_all(data, chunk=1) == EVERY_EVENT
    assert decode_all(data, chunk=7) == EVERY_EVENT


def test_one_byte_at_a_time_yields_nothing_until_the_frame_is_whole() -> None:
    data = encode_event(Result(1, "value"))
    decoder = FrameDecoder(BIG)
    for byte in data[:-1]:
        decoder.feed(bytes([byte]))
        assert decoder.next_frame() is None
    decoder.feed(data[-1:])
    assert decoder.next_frame() == (Result(1, "value"), len(data) - 10)
    assert decoder.next_frame() is None


def test_next_frame_reports_the_payload_size_that_counts_against_windows() -> None:
    for event in (Data(1, b"x" * 1000), Item(1, "x" * 1000)):
        data = encode_event(event)
        decoder = FrameDecoder(BIG)
        decoder.feed(data)
        assert decoder.next_frame() == (event, len(data) - 10)


class _Model(BaseModel):
    level: int
    name: str


@pytest.mark.parametrize(
    ("sent", "received"),
    [
        ((1, 2), [1, 2]),
        ({3}, [3]),
        (frozenset({"a"}), ["a"]),
        (_Model(level=1, name="x"), {"level": 1, "name": "x"}),
        ([_Model(level=2, name="y")], [{"level": 2, "name": "y"}]),
    ],
)
def test_values_msgpack_lacks_travel_as_their_plain_form(sent: Any, received: Any) -> None:
    assert decode_one(encode_event(Result(1, sent))) == Result(1, received)


def test_a_bytearray_or_memoryview_data_payload_travels_as_its_bytes() -> None:
    for data in (bytearray(b"abc"), memoryview(b"abc")):
        decoded = decode_one(encode_event(Data(1, data)))
        assert isinstance(decoded, Data)
        assert bytes(decoded.data) == b"abc"


def test_received_data_payloads_are_immutable_views() -> None:
    """DATA payloads may be zero-copy views of the received chunk, never of a buffer the
    decoder reuses: later feeds must not change an event already returned."""
    decoder = FrameDecoder(BIG)
    frame = encode_event(Data(1, b"first"))
    decoder.feed(frame + frame[:5])  # a whole frame, then the start of the next
    first = decoder.next_frame()
    assert first is not None and isinstance(first[0], Data)
    decoder.feed(encode_event(Data(1, b"XXXXX"))[5:])
    decoder.feed(b"\0" * 100)
    assert bytes(first[0].data) == b"first"
    split = decoder.next_frame()
    assert split is not None and isinstance(split[0], Data)
    decoder.feed(b"\xff" * 1000)
    assert bytes(split[0].data) == b"XXXXX"


def test_a_lent_buffer_is_read_in_place_and_its_tail_kept() -> None:
    """``feed(view, borrowed=True)``: payloads are views of the lent buffer, and once
    ``next_frame`` says None the decoder has copied the unparsed tail, so the caller may
    overwrite the buffer with its next read."""
    stream = b"".join(encode_event(Data(1, bytes([n]) * 50)) for n in range(1, 7))
    buffer = bytearray(64)
    view = memoryview(buffer)
    decoder = FrameDecoder(BIG)
    payloads: list[bytes] = []
    for start in range(0, len(stream), 64):
        piece = stream[start : start + 64]
        buffer[: len(piece)] = piece
        decoder.feed(view[: len(piece)], borrowed=True)
        while (frame := decoder.next_frame()) is not None:
            data = frame[0].data  # type: ignore[attr-defined]
            assert isinstance(data, memoryview)
            payloads.append(bytes(data))  # the caller keeps a copy, as ServerProtocol does
        buffer[:] = b"\xee" * 64  # the next read overwrites the buffer
    assert payloads == [bytes([n]) * 50 for n in range(1, 7)]
    assert decoder.buffered == 0


def _large_frame_stream() -> tuple[bytes, list[bytes]]:
    """Small, large (assembled in a buffer of their own), and small frames, back to back."""
    payloads = [b"a" * 10, bytes(range(256)) * 1024, b"b" * 3, bytes(70_000), b"c" * 20]
    payloads.append(bytes(reversed(range(256))) * 4000)
    return b"".join(encode_event(Data(1, payload)) for payload in payloads), payloads


@pytest.mark.parametrize("size", [1000, 4096, 65_536, 100_000, 262_144])
def test_large_frames_split_over_lent_reads_arrive_whole(size: int) -> None:
    stream, expected = _large_frame_stream()
    buffer = bytearray(size)
    view = memoryview(buffer)
    decoder = FrameDecoder(BIG)
    payloads: list[bytes] = []
    for start in range(0, len(stream), size):
        piece = stream[start : start + size]
        buffer[: len(piece)] = piece
        decoder.feed(view[: len(piece)], borrowed=True)
        while (frame := decoder.next_frame()) is not None:
            payloads.append(bytes(frame[0].data))  # type: ignore[attr-defined]
        buffer[:] = b"\xee" * size  # the next read overwrites the buffer
    assert payloads == expected
    assert decoder.buffered == 0


@pytest.mark.parametrize("size", [997, 65_536, 100_003])
def test_large_frames_split_over_bytes_arrive_whole(size: int) -> None:
    stream, expected = _large_frame_stream()
    assert [bytes(e.data) for e in decode_all(stream, chunk=size)] == expected  # type: ignore[attr-defined]


def test_a_large_frame_being_assembled_counts_as_buffered() -> None:
    frame = encode_event(Data(1, bytes(100_000)))
    decoder = FrameDecoder(BIG)
    decoder.feed(frame[:50_000])
    assert decoder.next_frame() is None
    assert decoder.buffered == 50_000
    decoder.feed(frame[50_000:] + encode_event(Cancel(3)))
    first, second = decoder.next_frame(), decoder.next_frame()
    assert first is not None and second is not None
    assert bytes(first[0].data) == bytes(100_000)  # type: ignore[attr-defined]
    assert second[0] == Cancel(3)
    assert decoder.next_frame() is None and decoder.buffered == 0


def test_feeding_again_before_draining_keeps_the_order_of_bytes() -> None:
    frame = encode_event(Data(1, b"x" * 70_000))
    decoder = FrameDecoder(BIG)
    decoder.feed(frame[:100])
    assert decoder.next_frame() is None  # assembling from here
    decoder.feed(frame[100:] + encode_event(Data(1, b"after")))
    decoder.feed(encode_event(Data(1, b"later")))  # before next_frame drained the rest
    events = [decoder.next_frame() for _ in range(3)]
    assert [bytes(e[0].data) for e in events if e is not None] == [  # type: ignore[attr-defined]
        b"x" * 70_000,
        b"after",
        b"later",
    ]


def test_a_bytearray_that_is_not_lent_is_copied_from() -> None:
    buffer = bytearray(encode_event(Data(1, b"abc")))
    decoder = FrameDecoder(BIG)
    decoder.feed(buffer)
    frame = decoder.next_frame()
    assert frame is not None
    buffer[10:] = b"XYZ"
    assert bytes(frame[0].data) == b"abc"  # type: ignore[attr-defined]


# -- layout -----------------------------------------------------------------------------------


def test_header_is_length_type_flags_stream_id_big_endian() -> None:
    assert HEADER.format == "!IBBI" and HEADER.size == 10
    assert encode_event(Data(0x01020304, b"ab", end=True)) == (
        b"\x00\x00\x00\x02" + b"\x08" + b"\x01" + b"\x01\x02\x03\x04" + b"ab"
    )


@pytest.mark.parametrize(
    ("event", "ftype", "stream_id", "payload"),
    [
        (Hello(1, {"window": 5}), FrameType.HELLO, 0, encode_value([1, {"window": 5}])),
        (
            Call(3, "n", "m", [1], {"k": 2}),
            FrameType.CALL,
            3,
            encode_value(["n", "m", [1], {"k": 2}]),
        ),
        (OpenStream(5, "n", "m"), FrameType.OPEN, 5, encode_value(["n", "m", [], {}])),
        (Result(3, 7), FrameType.RESULT, 3, encode_value(7)),
        (Item(3, "i"), FrameType.ITEM, 3, encode_value("i")),
        (Error(3, {"code": "c"}), FrameType.ERROR, 3, encode_value({"code": "c"})),
        (Cancel(3), FrameType.CANCEL, 3, b""),
        (Data(5, b"raw"), FrameType.DATA, 5, b"raw"),
        (WindowUpdate(5, 0x10203), FrameType.WINDOW, 5, b"\x00\x01\x02\x03"),
        (Ping(b"abcdefgh"), FrameType.PING, 0, b"abcdefgh"),
        (Pong(b"abcdefgh"), FrameType.PONG, 0, b"abcdefgh"),
        (GoAway("normal", "bye"), FrameType.GOAWAY, 0, encode_value(["normal", "bye"])),
    ],
    ids=lambda x: type(x).__name__ if isinstance(x, Event) else None,
)
def test_frame_layout(event: Event, ftype: FrameType, stream_id: int, payload: bytes) -> None:
    assert encode_event(event) == raw_frame(ftype, payload, stream_id=stream_id)


def test_frame_type_numbers_are_fixed() -> None:
    assert {t.name: t.value for t in FrameType} == {
        "HELLO": 1,
        "CALL": 2,
        "OPEN": 3,
        "RESULT": 4,
        "ITEM": 5,
        "ERROR": 6,
        "CANCEL": 7,
        "DATA": 8,
        "WINDOW": 9,
        "PING": 10,
        "PONG": 11,
        "GOAWAY": 12,
    }


def test_unknown_flag_bits_are_ignored() -> None:
    assert decode_one(raw_frame(FrameType.DATA, b"x", stream_id=1, flags=0xFE)) == Data(1, b"x")
    assert decode_one(raw_frame(FrameType.CANCEL, b"", stream_id=1, flags=0xFF)) == Cancel(1)


# -- encoding errors --------------------------------------------------------------------------


def test_connection_closed_cannot_be_sent() -> None:
    with pytest.raises(LocalProtocolError, match="ConnectionClosed cannot be sent"):
        encode_event(ConnectionClosed())


@pytest.mark.parametrize("value", [object(), 2**64, {1j}])
def test_unencodable_values_are_the_callers_error(value: object) -> None:
    with pytest.raises(LocalProtocolError, match="value cannot be sent on the wire"):
        encode_event(Result(1, value))


# -- decoding errors --------------------------------------------------------------------------


def test_oversize_frame_is_refused_from_its_header_alone() -> None:
    decoder = FrameDecoder(100)
    decoder.feed(HEADER.pack(101, FrameType.DATA, 0, 1))
    with pytest.raises(RemoteProtocolError, match="frame of 101 bytes exceeds the limit of 100"):
        decoder.next_frame()


def test_a_frame_of_exactly_the_limit_is_accepted() -> None:
    assert decode_all(encode_event(Data(1, b"x" * 100)), max_payload=100) == [Data(1, b"x" * 100)]


def test_the_limit_can_be_raised_between_frames() -> None:
    decoder = FrameDecoder(10)
    decoder.feed(encode_event(Data(1, b"x" * 50)))
    with pytest.raises(RemoteProtocolError):
        decoder.next_frame()
    decoder = FrameDecoder(10)
    decoder.feed(encode_event(Data(1, b"x" * 5)) + encode_event(Data(1, b"y" * 50)))
    assert decoder.next_frame() == (Data(1, b"x" * 5), 5)
    decoder.max_payload = 50
    assert decoder.next_frame() == (Data(1, b"y" * 50), 50)


@pytest.mark.parametrize("ftype", [0, 13, 99, 255])
def test_unknown_frame_type(ftype: int) -> None:
    with pytest.raises(RemoteProtocolError, match=f"unknown frame type {ftype}"):
        decode_one(raw_frame(ftype, b"", stream_id=1))


@pytest.mark.parametrize(
    "ftype",
    [
        FrameType.HELLO,
        FrameType.CALL,
        FrameType.OPEN,
        FrameType.RESULT,
        FrameType.ITEM,
        FrameType.ERROR,
        FrameType.GOAWAY,
    ],
)
@pytest.mark.parametrize(
    "payload",
    [b"", b"\xc1", b"\x92\x01", b"\xc0\xc0", b"\x81\x81\x01\x02\x03", b"\xd5\xff\x00\x00"],
    ids=["empty", "invalid-opcode", "truncated-array", "trailing", "unhashable-key", "bad-ts"],
)
def test_malformed_msgpack(ftype: FrameType, payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="malformed msgpack payload"):
        decode_one(raw_frame(ftype, payload, stream_id=1))


@pytest.mark.parametrize(
    ("ftype", "payload"),
    [
        (FrameType.RESULT, b"\xa1\xff"),  # str of one byte, not UTF-8
        (FrameType.HELLO, b"\x92\x01\x81\xa1\xff\x01"),  # [1, {"\xff": 1}]
        (FrameType.CALL, b"\x94\xa1n\xa2\xed\xa0\x90\x80"),  # method is a lone surrogate
        (FrameType.RESULT, b"\x91" * 5000 + b"\xc0"),  # [[[[...None...]]]] 5 KB deep
    ],
    ids=["bad-utf8", "bad-utf8-key", "surrogate", "deep-nesting"],
)
def test_undecodable_msgpack_is_a_remote_protocol_error(ftype: FrameType, payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_one(raw_frame(ftype, payload, stream_id=1))


@pytest.mark.parametrize(
    ("ftype", "fields", "match"),
    [
        (FrameType.CALL, ["n", "m", []], "CALL/OPEN payload must be"),
        (FrameType.OPEN, {"node": "n"}, "CALL/OPEN payload must be"),
        (FrameType.HELLO, [1], "HELLO payload must be"),
        (FrameType.HELLO, 1, "HELLO payload must be"),
        (FrameType.GOAWAY, ["normal"], "GOAWAY payload must be"),
        (FrameType.GOAWAY, "normal", "GOAWAY payload must be"),
    ],
)
def test_payload_shapes(ftype: FrameType, fields: object, match: str) -> None:
    with pytest.raises(RemoteProtocolError, match=match):
        decode_one(raw_frame(ftype, msgspec.msgpack.encode(fields), stream_id=1))


@pytest.mark.parametrize(
    ("frame", "name"),
    [
        (raw_frame(FrameType.CALL, encode_value([1, "m", [], {}]), stream_id=1), "CALL"),
        (raw_frame(FrameType.OPEN, encode_value(["n", "", [], {}]), stream_id=1), "OPEN"),
        (raw_frame(FrameType.CALL, encode_value(["n", "m", {}, {}]), stream_id=1), "CALL"),
        (raw_frame(FrameType.RESULT, encode_value(None), stream_id=0), "RESULT"),
        (raw_frame(FrameType.ITEM, encode_value(None), stream_id=0), "ITEM"),
        (raw_frame(FrameType.DATA, b"x", stream_id=0), "DATA"),
        (raw_frame(FrameType.CANCEL, b"", stream_id=0), "CANCEL"),
        (raw_frame(FrameType.ERROR, encode_value("boom"), stream_id=1), "ERROR"),
        (raw_frame(FrameType.WINDOW, b"\x00\x00\x00\x00", stream_id=1), "WINDOW"),
        (raw_frame(FrameType.WINDOW, b"\x80\x00\x00\x00", stream_id=1), "WINDOW"),
        (raw_frame(FrameType.WINDOW, b"\x00\x00\x00\x01", stream_id=0), "WINDOW"),
        (raw_frame(FrameType.PING, b"1234567"), "PING"),
        (raw_frame(FrameType.PONG, b"123456789"), "PONG"),
        (raw_frame(FrameType.HELLO, encode_value([0, {}])), "HELLO"),
        (raw_frame(FrameType.HELLO, encode_value([1, []])), "HELLO"),
        (raw_frame(FrameType.GOAWAY, encode_value([1, ""])), "GOAWAY"),
    ],
)
def test_fields_the_event_rejects_are_the_peers_error(frame: bytes, name: str) -> None:
    with pytest.raises(RemoteProtocolError, match=f"invalid {name} frame") as info:
        decode_one(frame)
    assert isinstance(info.value.__cause__, LocalProtocolError)


@pytest.mark.parametrize("payload", [b"", b"\x00\x00\x01", b"\x00\x00\x00\x01\x00"])
def test_window_payload_is_exactly_4_bytes(payload: bytes) -> None:
    with pytest.raises(RemoteProtocolError, match="WINDOW payload must be 4 bytes"):
        decode_one(raw_frame(FrameType.WINDOW, payload, stream_id=1))


# -- the receive buffer -----------------------------------------------------------------------


def test_a_partial_frame_stays_buffered() -> None:
    data = encode_event(Data(1, b"x" * 20))
    decoder = FrameDecoder(BIG)
    decoder.feed(data[:15])
    assert decoder.next_frame() is None
    assert decoder.buffered == 15


def test_many_frames_leave_nothing_buffered() -> None:
    frame = encode_event(Data(1, b"x" * 100))
    decoder = FrameDecoder(BIG)
    for _ in range(1000):
        decoder.feed(frame)
        assert decoder.next_frame() == (Data(1, b"x" * 100), 100)
        assert decoder.buffered == 0
    decoder.feed(frame * 3 + frame[:7])
    assert [decoder.next_frame() for _ in range(3)] == [(Data(1, b"x" * 100), 100)] * 3
    assert decoder.next_frame() is None
    assert decoder.buffered == 7


@pytest.mark.parametrize("cut", [1, 9, 10, 11, 14])
def test_a_truncated_frame_at_eof_is_a_remote_protocol_error(cut: int) -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(encode_event(Hello(1))[:-1] if cut == 14 else encode_event(Hello(1))[:cut])
    assert drain(conn) == []
    conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError, match="connection closed in the middle of a frame"):
        conn.next_event()


def test_whole_frames_before_eof_are_still_delivered() -> None:
    conn = Connection(Role.SERVER)
    conn.receive_data(encode_event(Hello(1)))
    conn.receive_data(b"")
    assert drain(conn) == [Hello(1), ConnectionClosed()]
