"""``tether.wire._server`` helpers on their own: how received DATA reaches a byte-stream driver."""

from __future__ import annotations

import asyncio

from tether.wire._connection import HEADER_SIZE
from tether.wire._server import _batches, _Inbox

BIG = bytes(100_000)


def test_small_payloads_are_joined_and_large_ones_passed_as_they_are() -> None:
    large = memoryview(bytearray(BIG))
    batches = _batches([b"a", b"b", large, b"c", b"d", BIG])
    assert batches == [b"ab", large, b"cd", BIG]
    assert batches[1] is large  # not copied


def test_a_lone_payload_is_passed_as_it_is() -> None:
    chunks = [memoryview(b"xyz")]
    assert _batches(chunks) is chunks


def test_the_inbox_copies_lent_views_but_keeps_owned_payloads() -> None:
    loop = asyncio.new_event_loop()
    try:
        inbox = _Inbox(loop)
        owned = memoryview(bytearray(b"own"))
        buffer = bytearray(b"lentlent")
        assert inbox.put(owned, False, lent=False) is False  # nothing to keep
        assert inbox.put(memoryview(buffer)[:4], False) is True
        # Owned, but after a lent view: stays in order, so it is copied with it.
        assert inbox.put(memoryview(bytearray(b"late")), False, lent=False) is False
        inbox.keep()
        buffer[:] = b"XXXXXXXX"  # the receive buffer is reused
        items, counted, end = loop.run_until_complete(inbox.take())
    finally:
        loop.close()
    assert items[0] is owned
    assert [bytes(item) for item in items] == [b"own", b"lentlate"]
    assert counted == 3 * HEADER_SIZE + 11 and end is False
