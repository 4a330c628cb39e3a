"""``copy_bytes`` and ``copy_both_ways``: the one blocking byte copier (real sockets)."""

from __future__ import annotations

import socket

from tether.errors import ConnectionLost
from tether.wire import copy_both_ways, copy_bytes


def test_copies_until_the_end_then_calls_at_end() -> None:
    chunks = [b"a", b"bc", b""]
    written: list[bytes] = []
    ended: list[bool] = []
    assert copy_bytes(lambda: chunks.pop(0), written.append, lambda: ended.append(True)) is None
    assert written == [b"a", b"bc"] and ended == [True]


def test_a_failing_side_is_returned_and_ends_the_copy() -> None:
    def read() -> bytes:
        raise ConnectionLost("gone")

    ended: list[bool] = []
    error = copy_bytes(read, print, lambda: ended.append(True))
    assert isinstance(error, ConnectionLost) and not ended


def test_both_ways_over_two_socket_pairs() -> None:
    left, left_peer = socket.socketpair()
    right, right_peer = socket.socketpair()
    with left, left_peer, right, right_peer:
        left_peer.sendall(b"to the right")
        left_peer.shutdown(socket.SHUT_WR)
        right_peer.sendall(b"to the left")
        right_peer.shutdown(socket.SHUT_WR)
        outcome = copy_both_ways(
            lambda: copy_bytes(lambda: left.recv(100), right.sendall, lambda: right.shutdown(1)),
            lambda: copy_bytes(lambda: right.recv(100), left.sendall, lambda: left.shutdown(1)),
        )
        assert outcome == (None, None)
        assert right_peer.recv(100) == b"to the right"
        assert left_peer.recv(100) == b"to the left"
