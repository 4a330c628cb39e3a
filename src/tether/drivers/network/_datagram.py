"""UDP as a byte stream: each datagram travels as one length-prefixed frame.

Frame: a 2-byte big-endian payload length, then the payload (0 to 65,535 bytes; a zero-length
datagram is a valid frame). Frames may be split or merged by the stream in any way; both ends
reassemble them. Datagrams are lossy by nature, and so is this: when the client reads slower
than datagrams arrive, the exporter keeps the newest ``queue_size`` and drops the oldest.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from typing import Any

__all__ = ["MAX_DATAGRAM", "FrameDecoder", "UdpProtocol", "UdpStream", "encode_frame"]

MAX_DATAGRAM = 0xFFFF
_HEADER = struct.Struct(">H")


def encode_frame(payload: bytes) -> bytes:
    """One datagram as a frame.

    Raises:
        ValueError: the payload is longer than 65,535 bytes.
    """
    if len(payload) > MAX_DATAGRAM:
        raise ValueError(f"a datagram holds at most {MAX_DATAGRAM} bytes (got {len(payload)})")
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Reassembles frames from stream chunks (sans-IO)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add a chunk; return the datagrams it completed, in order."""
        self._buffer += data
        out: list[bytes] = []
        while len(self._buffer) >= 2:
            (size,) = _HEADER.unpack_from(self._buffer)
            if len(self._buffer) < 2 + size:
                break
            out.append(bytes(self._buffer[2 : 2 + size]))
            del self._buffer[: 2 + size]
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)


class UdpProtocol(asyncio.DatagramProtocol):
    """Feeds a :class:`UdpStream` from a datagram endpoint."""

    def __init__(self, stream: UdpStream) -> None:
        self.stream = stream

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.stream._deliver(data)

    def error_received(self, exc: Exception) -> None:
        self.stream.errors += 1  # e.g. ICMP port unreachable: UDP carries on

    def connection_lost(self, exc: Exception | None) -> None:
        self.stream._deliver(None)


class UdpStream:
    """A connected UDP socket as a tether byte stream of frames."""

    def __init__(self, queue_size: int) -> None:
        self._frames: deque[bytes | None] = deque()
        self._queue_size = queue_size
        self._wakeup = asyncio.Event()
        self._decoder = FrameDecoder()
        self.transport: asyncio.DatagramTransport | None = None
        self.sock: socket.socket | None = None
        self.dropped = 0
        self.errors = 0

    def _deliver(self, data: bytes | None) -> None:
        if data is not None and len(self._frames) >= self._queue_size:
            self._frames.popleft()
            self.dropped += 1
        self._frames.append(data)
        self._wakeup.set()

    async def receive(self) -> bytes:
        while not self._frames:
            self._wakeup.clear()
            await self._wakeup.wait()
        data = self._frames.popleft()
        if data is None:
            self._frames.appendleft(None)  # stays ended
            return b""
        return encode_frame(data)

    async def send(self, data: bytes) -> None:
        assert self.transport is not None
        for datagram in self._decoder.feed(data):
            if datagram or self.sock is None:
                self.transport.sendto(datagram)
            else:  # asyncio's transport silently skips empty datagrams; they are valid
                with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                    self.sock.send(b"")

    async def send_eof(self) -> None:
        self._deliver(None)

    async def aclose(self) -> None:
        if self.transport is not None:
            self.transport.close()
