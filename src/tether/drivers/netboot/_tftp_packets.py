"""TFTP packets (RFC 1350, options RFC 2347): frozen dataclasses, parsed and encoded (sans-IO).

Every packet starts with a 2-byte big-endian opcode. Requests carry a NUL-terminated file
name and mode, then option name/value pairs (RFC 2347); DATA and ACK carry a 16-bit block
number; ERROR a code and a message; OACK the accepted options.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from tether.errors import TetherError

__all__ = [
    "Ack",
    "Data",
    "ErrorCode",
    "ErrorPacket",
    "OptionAck",
    "Packet",
    "ReadRequest",
    "TftpPacketError",
    "WriteRequest",
    "encode",
    "parse",
]

_OPCODE = struct.Struct(">H")
_BLOCK = struct.Struct(">HH")


class TftpPacketError(TetherError, ValueError):
    """A datagram is not a well-formed TFTP packet (the message says what is wrong)."""


class Opcode(IntEnum):
    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6


class ErrorCode(IntEnum):
    """TFTP error codes (RFC 1350, 2347)."""

    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    BAD_OPTIONS = 8


def _check_block(block: int) -> None:
    if not 0 <= block <= 0xFFFF:
        raise TftpPacketError(f"block number {block} does not fit 16 bits")


@dataclass(frozen=True, slots=True)
class ReadRequest:
    """RRQ: the client wants ``filename``; ``options`` are lower-cased names -> values."""

    filename: str
    mode: str = "octet"
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """WRQ: the client wants to store ``filename`` (refused: tether's servers are read-only)."""

    filename: str
    mode: str = "octet"
    options: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Data:
    """DATA: one block of the file."""

    block: int
    payload: bytes | memoryview

    def __post_init__(self) -> None:
        _check_block(self.block)


@dataclass(frozen=True, slots=True)
class Ack:
    """ACK: the receiver has ``block`` (0 acknowledges an OACK)."""

    block: int

    def __post_init__(self) -> None:
        _check_block(self.block)


@dataclass(frozen=True, slots=True)
class ErrorPacket:
    """ERROR: the transfer ends."""

    code: int
    message: str


@dataclass(frozen=True, slots=True)
class OptionAck:
    """OACK: the options the server accepted, with their values."""

    options: dict[str, str]


Packet = ReadRequest | WriteRequest | Data | Ack | ErrorPacket | OptionAck


def _strings(body: bytes) -> list[str]:
    if not body.endswith(b"\0"):
        raise TftpPacketError("request strings are not NUL-terminated")
    try:
        return body[:-1].decode("ascii").split("\0")
    except UnicodeDecodeError:
        raise TftpPacketError("request strings are not ASCII") from None


def _request(body: bytes) -> tuple[str, str, dict[str, str]]:
    parts = _strings(body)
    if len(parts) < 2 or len(parts) % 2:
        raise TftpPacketError("a request needs a file name, a mode and option pairs")
    filename, mode = parts[0], parts[1].lower()
    if not filename:
        raise TftpPacketError("the file name is empty")
    if mode not in ("octet", "netascii", "mail"):
        raise TftpPacketError(f"unknown transfer mode {mode!r}")
    options: dict[str, str] = {}
    for name, value in zip(parts[2::2], parts[3::2], strict=True):
        options.setdefault(name.lower(), value)
    return filename, mode, options


def parse(datagram: bytes) -> Packet:
    """The packet in ``datagram``.

    Raises:
        TftpPacketError: too short, an unknown opcode, or a malformed body.
    """
    if len(datagram) < 2:
        raise TftpPacketError(f"a TFTP packet has at least 2 bytes (got {len(datagram)})")
    (opcode,) = _OPCODE.unpack_from(datagram)
    body = datagram[2:]
    if opcode in (Opcode.RRQ, Opcode.WRQ):
        filename, mode, options = _request(bytes(body))
        cls = ReadRequest if opcode == Opcode.RRQ else WriteRequest
        return cls(filename, mode, options)
    if opcode in (Opcode.DATA, Opcode.ACK, Opcode.ERROR):
        if len(datagram) < 4:
            raise TftpPacketError(f"opcode {opcode} needs 4 bytes (got {len(datagram)})")
        (_, number) = _BLOCK.unpack_from(datagram)
        if opcode == Opcode.DATA:
            return Data(number, datagram[4:])
        if opcode == Opcode.ACK:
            return Ack(number)
        message = bytes(datagram[4:]).split(b"\0", 1)[0].decode("ascii", "replace")
        return ErrorPacket(number, message)
    if opcode == Opcode.OACK:
        parts = _strings(bytes(body)) if body else []
        if len(parts) % 2:
            raise TftpPacketError("an OACK needs option name/value pairs")
        return OptionAck(dict(zip(parts[::2], parts[1::2], strict=True)))
    raise TftpPacketError(f"unknown TFTP opcode {opcode}")


def _nul(*parts: str) -> bytes:
    return b"".join(part.encode("ascii") + b"\0" for part in parts)


def encode(packet: Packet) -> bytes:
    """The datagram for ``packet``."""
    match packet:
        case Data(block, payload):
            return _BLOCK.pack(Opcode.DATA, block) + bytes(payload)
        case Ack(block):
            return _BLOCK.pack(Opcode.ACK, block)
        case ErrorPacket(code, message):
            return _BLOCK.pack(Opcode.ERROR, code) + _nul(message)
        case OptionAck(options):
            pairs = [item for pair in options.items() for item in pair]
            return _OPCODE.pack(Opcode.OACK) + _nul(*pairs)
        case ReadRequest(filename, mode, options) | WriteRequest(filename, mode, options):
            opcode = Opcode.RRQ if isinstance(packet, ReadRequest) else Opcode.WRQ
            pairs = [item for pair in options.items() for item in pair]
            return _OPCODE.pack(opcode) + _nul(filename, mode, *pairs)
    raise TypeError(f"not a TFTP packet: {packet!r}")
