"""tether's own nesting limit for msgpack values: the same on every Python version."""

from __future__ import annotations

import sys

import pytest

from tether.errors import RemoteProtocolError
from tether.wire._frames import HEADER, MAX_DEPTH, FrameDecoder, FrameType


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload), FrameType.RESULT, 0, 1) + payload


def decode(payload: bytes) -> object:
    decoder = FrameDecoder(1 << 20)
    decoder.feed(frame(payload))
    decoded = decoder.next_frame()
    assert decoded is not None
    return decoded[0].value  # type: ignore[attr-defined]


def nested(depth: int) -> bytes:
    return b"\x91" * (depth - 1) + b"\x90"  # [[[...[]...]]] with `depth` arrays


def test_values_up_to_the_limit_decode() -> None:
    value = decode(nested(MAX_DEPTH))
    for _ in range(MAX_DEPTH - 1):
        assert isinstance(value, list)
        value = value[0]
    assert value == []


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 900, 5000, 20000])
def test_deeper_values_are_refused_whatever_the_recursion_limit(depth: int) -> None:
    assert sys.getrecursionlimit() > MAX_DEPTH
    with pytest.raises(RemoteProtocolError, match="malformed msgpack payload"):
        decode(nested(depth))


def test_maps_count_too() -> None:
    deep_map = b"\x81\xa1k" * (MAX_DEPTH + 1) + b"\xc0"  # {"k": {"k": ... None}}
    with pytest.raises(RemoteProtocolError, match=f"nested deeper than {MAX_DEPTH}"):
        decode(deep_map)


def test_a_long_flat_payload_with_header_bytes_in_strings_decodes() -> None:
    text = "\x90" * 500  # many bytes that look like array headers, inside one str
    assert decode(b"\xda" + len(text.encode()).to_bytes(2, "big") + text.encode()) == text
