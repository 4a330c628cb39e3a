"""The shell stream's framing (sans-IO: bytes in, frames out, no I/O here).

A shell needs more than bytes: the client resizes the terminal, the device reports stderr
apart from stdout (without a pty) and, last, the exit status. Each frame is one type byte, a
4-byte big-endian payload length, then the payload:

| type | direction | payload |
| --- | --- | --- |
| ``0`` DATA | both | bytes: keys typed, or the device's stdout (with a pty: all output) |
| ``1`` RESIZE | client to device | columns, rows: two 2-byte big-endian integers |
| ``2`` STDERR | device to client | bytes the device wrote to stderr (no pty) |
| ``3`` EXIT | device to client | the exit status, 4-byte big-endian signed (128 + N: signal N) |

End of input is the byte stream's own EOF; EXIT is the device's last frame.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

__all__ = ["MAX_PAYLOAD", "FrameDecoder", "FrameKind", "ShellFrame", "encode"]

MAX_PAYLOAD = 1 << 20
_HEADER = struct.Struct(">BI")


class FrameKind(enum.IntEnum):
    DATA = 0
    RESIZE = 1
    STDERR = 2
    EXIT = 3


@dataclass(frozen=True, slots=True)
class ShellFrame:
    """One frame. ``data`` for DATA/STDERR; ``cols``/``rows`` for RESIZE; ``status`` for EXIT."""

    kind: FrameKind
    data: bytes = b""
    cols: int = 0
    rows: int = 0
    status: int = 0

    def __post_init__(self) -> None:
        if len(self.data) > MAX_PAYLOAD:
            raise ValueError(f"shell frame payload of {len(self.data)} bytes (max {MAX_PAYLOAD})")
        if self.kind is FrameKind.RESIZE and not (
            0 < self.cols < 1 << 16 and 0 < self.rows < 1 << 16
        ):
            raise ValueError(f"terminal size {self.cols}x{self.rows} out of range")
        if self.kind is FrameKind.EXIT and not -(1 << 31) <= self.status < 1 << 31:
            raise ValueError(f"exit status {self.status} out of range")


def encode(frame: ShellFrame) -> bytes:
    """The bytes of one frame."""
    if frame.kind is FrameKind.RESIZE:
        payload = struct.pack(">HH", frame.cols, frame.rows)
    elif frame.kind is FrameKind.EXIT:
        payload = struct.pack(">i", frame.status)
    else:
        payload = frame.data
    return _HEADER.pack(frame.kind, len(payload)) + payload


class FrameDecoder:
    """Feed bytes as they arrive; get whole frames back.

    Raises ``ValueError`` (naming the problem) on an unknown type, an oversized payload or a
    RESIZE/EXIT payload of the wrong size; the decoder is unusable afterwards.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._failed: str | None = None

    def feed(self, data: bytes) -> list[ShellFrame]:
        if self._failed is not None:
            raise ValueError(f"shell stream already failed: {self._failed}")
        self._buffer += data
        frames: list[ShellFrame] = []
        try:
            while len(self._buffer) >= _HEADER.size:
                kind_byte, size = _HEADER.unpack_from(self._buffer)
                if size > MAX_PAYLOAD:
                    raise ValueError(f"shell frame of {size} bytes (max {MAX_PAYLOAD})")
                try:
                    kind = FrameKind(kind_byte)
                except ValueError:
                    raise ValueError(f"unknown shell frame type {kind_byte}") from None
                end = _HEADER.size + size
                if len(self._buffer) < end:
                    break
                payload = bytes(self._buffer[_HEADER.size : end])
                del self._buffer[:end]
                frames.append(_frame(kind, payload))
        except ValueError as exc:
            self._failed = str(exc)
            raise
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._buffer)


def _frame(kind: FrameKind, payload: bytes) -> ShellFrame:
    if kind is FrameKind.RESIZE:
        if len(payload) != 4:
            raise ValueError(f"RESIZE payload of {len(payload)} bytes (expected 4)")
        cols, rows = struct.unpack(">HH", payload)
        return ShellFrame(kind, cols=cols, rows=rows)
    if kind is FrameKind.EXIT:
        if len(payload) != 4:
            raise ValueError(f"EXIT payload of {len(payload)} bytes (expected 4)")
        return ShellFrame(kind, status=struct.unpack(">i", payload)[0])
    return ShellFrame(kind, data=payload)
