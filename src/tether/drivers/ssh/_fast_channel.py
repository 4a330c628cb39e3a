"""A faster send path for bulk channel data (SFTP writes, forwards) over AES-GCM.

Theory of operation. asyncssh builds each outgoing ``CHANNEL_DATA`` packet in five layers
(channel buffer, channel packet, connection packet, padding, cipher shim), copying the data
at each, makes a new ``AESGCM`` object per packet, and sends an ``SSH_MSG_IGNORE`` packet
before every packet (a countermeasure for CBC modes, where the next IV is known; GCM's IV is
a counter and does not need it). On a 64 MiB SFTP put that was most of the exporter's CPU.

:func:`speed_up` replaces one channel's ``write`` and ``_flush_send_buf`` with versions
that, while the connection is in the plain state this path understands (AES-GCM, no
compression, key exchange done, no rekey due), build each packet with one join, encrypt it
with one kept ``AESGCM``, advance the connection's sequence number, IV and rekey count as
asyncssh would, and hand the packets of one write to the transport in one ``writelines``.
Anything else (another cipher, a rekey due or running, extended data, a closed channel)
goes through asyncssh's own methods, so the bytes on the wire are an ordinary SSH stream
either way. The packets are the same as asyncssh's (random padding, same lengths), without
the ignore packets.

It reads and writes asyncssh's private state, so it checks first (:func:`supported`) that
this asyncssh is a release it was tested with (:data:`TESTED_ASYNCSSH`) and has the names it
uses, and does nothing otherwise: a newer asyncssh runs on its own code until the tests in
``tests/drivers/test_ssh_fast*.py`` pass on it and the range is widened.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["TESTED_ASYNCSSH", "fast_sender", "sftp_channel", "speed_up", "supported"]

#: The asyncssh releases (major, minor) this path was tested against.
TESTED_ASYNCSSH = frozenset({(2, 24)})

_MSG_CHANNEL_DATA = 94
_RANDOM_POOL = 4096
#: The asyncssh attributes this path reads or writes, by object.
_CHANNEL_NAMES = (
    "_conn", "_send_buf", "_send_buf_len", "_send_window", "_send_pktsize", "_send_chan",
    "_send_state", "_pause_resume_writing", "_flush_send_buf",
)  # fmt: skip
_CONNECTION_NAMES = (
    "_send_encryption", "_compressor", "_kex_complete", "_auth_complete", "_rekey_bytes_sent",
    "_rekey_bytes", "_rekey_seconds", "_rekey_time", "_send_seq", "_transport",
    "_send_blocksize", "_send_enchdrlen",
)  # fmt: skip


def supported(channel: Any) -> bool:
    """Whether ``channel`` (an asyncssh channel) has everything :func:`speed_up` uses."""
    conn = getattr(channel, "_conn", None)
    return (
        _asyncssh_release() in TESTED_ASYNCSSH
        and conn is not None
        and all(hasattr(channel, name) for name in _CHANNEL_NAMES)
        and all(hasattr(conn, name) for name in _CONNECTION_NAMES)
    )


def _asyncssh_release() -> tuple[int, int] | None:
    try:
        from asyncssh.version import __version__
    except ImportError:  # pragma: no cover - every asyncssh release has it
        return None
    major, minor, *_ = (int(part) if part.isdigit() else -1 for part in __version__.split("."))
    return major, minor


class _GcmSender:
    """Builds, encrypts and sends ``CHANNEL_DATA`` packets for one channel."""

    def __init__(self, channel: Any) -> None:
        self._channel = channel
        self._conn = channel._conn
        self._key: bytes | None = None
        self._aead: AESGCM | None = None
        self.slow_write = channel.write
        self.slow_flush = channel._flush_send_buf
        #: Packets sent by the fast path so far.
        self.packets = 0
        self._random = b""  # random bytes for padding, drawn in bulk (a getrandom a packet
        self._random_at = 0  # showed in profiles)

    def _padding(self, size: int) -> bytes:
        if self._random_at + size > len(self._random):
            self._random, self._random_at = os.urandom(_RANDOM_POOL), 0
        start = self._random_at
        self._random_at = start + size
        return self._random[start : start + size]

    def _cipher(self) -> Any | None:
        """asyncssh's GCM cipher shim, when the fast path may run now; else None."""
        conn = self._conn
        encryption = conn._send_encryption
        cipher: Any = getattr(encryption, "_cipher", None)
        if (
            type(encryption).__name__ != "GCMEncryption"
            or type(cipher).__name__ != "GCMCipher"
            or conn._compressor is not None
            or not conn._kex_complete
            or not conn._auth_complete
            or not conn._transport
            or conn._rekey_bytes_sent >= conn._rekey_bytes
            or (conn._rekey_seconds and time.monotonic() >= conn._rekey_time)
            or self._channel._send_state != "open"
        ):
            return None
        if cipher._key is not self._key:  # a new key after a rekey
            self._key = cipher._key
            self._aead = AESGCM(cipher._key)
        return cipher

    def send(self, cipher: Any, parts: Sequence[memoryview]) -> int:
        """Send as much of the bytes of ``parts`` (in order) as the peer's window takes, each
        packet joined straight from the parts; the bytes sent."""
        channel, conn, aead = self._channel, self._conn, self._aead
        assert aead is not None
        iv: bytes = cipher._iv
        fixed, counter = iv[:4], int.from_bytes(iv[4:], "big")
        head = bytes((_MSG_CHANNEL_DATA,)) + channel._send_chan.to_bytes(4, "big")
        block, enchdr = conn._send_blocksize, conn._send_enchdrlen
        seq, counted, sent = conn._send_seq, 0, 0
        total = sum(len(part) for part in parts)
        index, at = 0, 0  # where in parts the next packet starts
        out: list[bytes] = []
        while sent < total and channel._send_window > 0:
            size = min(total - sent, channel._send_window, channel._send_pktsize)
            padlen = -(enchdr + 9 + size) % block
            if padlen < 4:
                padlen += block
            length = 1 + 9 + size + padlen
            header = length.to_bytes(4, "big")
            pieces: list[bytes | memoryview] = [bytes((padlen,)) + head + size.to_bytes(4, "big")]
            need = size
            while need:
                part = parts[index]
                take = min(len(part) - at, need)
                pieces.append(part[at : at + take])
                need -= take
                at += take
                if at == len(part):
                    index, at = index + 1, 0
            pieces.append(self._padding(padlen))
            out.append(header)
            out.append(aead.encrypt(fixed + counter.to_bytes(8, "big"), b"".join(pieces), header))
            counter = (counter + 1) & 0xFFFFFFFFFFFFFFFF
            seq = (seq + 1) & 0xFFFFFFFF
            counted += length
            channel._send_window -= size
            sent += size
        if out:
            cipher._iv = fixed + counter.to_bytes(8, "big")
            conn._send_seq = seq
            conn._rekey_bytes_sent += counted
            conn._transport.writelines(out)
            self.packets += len(out) // 2
        return sent

    def write(self, data: bytes, datatype: int | None = None) -> None:
        """``channel.write``: straight to packets when nothing is queued before it."""
        if datatype is not None or not data:
            self.slow_write(data, datatype)
        else:
            self.write_parts([memoryview(data)])

    def write_parts(self, parts: Sequence[memoryview]) -> None:
        """Write the bytes of ``parts`` as one write, without joining them first. They are
        used up (sent, or copied into the channel's buffer) when this returns.

        Raises:
            BrokenPipeError: the channel is closed for sending (as ``write``).
        """
        channel = self._channel
        cipher = self._cipher()
        if cipher is None:
            self.slow_write(b"".join(parts))
            return
        # Data already waiting for the window goes first; what the window does not take
        # now waits behind it, as asyncssh keeps it (the next window update flushes it).
        sent = 0 if channel._send_buf else self.send(cipher, parts)
        if sent < sum(len(part) for part in parts):
            rest = bytearray()
            for part in parts:
                skip = min(sent, len(part))
                rest += part[skip:]
                sent -= skip
            channel._send_buf.append((rest, None))
            channel._send_buf_len += len(rest)
        channel._pause_resume_writing()

    def flush(self) -> None:
        """``channel._flush_send_buf`` (the window opened): queued data as packets first."""
        channel = self._channel
        while channel._send_buf and channel._send_window > 0:
            buffer, datatype = channel._send_buf[0]
            cipher = None if datatype is not None else self._cipher()
            if cipher is None:
                break
            with memoryview(buffer) as view:
                sent = self.send(cipher, [view])
            channel._send_buf_len -= sent
            if sent == len(buffer):
                del channel._send_buf[0]
            else:
                del buffer[:sent]
        self.slow_flush()  # the rest, the pause/resume and a pending EOF or close


def speed_up(channel: Any) -> bool:
    """Send ``channel``'s data through the fast path from now on; False if not supported."""
    if not supported(channel) or fast_sender(channel) is not None:
        return False
    sender = _GcmSender(channel)
    channel.write = sender.write
    channel._flush_send_buf = sender.flush
    return True


def fast_sender(channel: Any) -> _GcmSender | None:
    """The fast path :func:`speed_up` put on ``channel``, if it did."""
    sender = getattr(getattr(channel, "write", None), "__self__", None)
    return sender if isinstance(sender, _GcmSender) else None


def sftp_channel(sftp: Any) -> Any | None:
    """The channel an asyncssh ``SFTPClient`` runs on (None if this asyncssh hides it)."""
    writer = getattr(getattr(sftp, "_handler", None), "_writer", None)
    return getattr(writer, "channel", None)
