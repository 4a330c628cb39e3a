"""TLS over memory buffers: ``TLSChannel`` (a blocking socket) and ``TLSBuffer`` (sans-IO).

An ``ssl.SSLSocket`` must not be read by one thread while another writes it (both would use
one OpenSSL object). The blocking client does exactly that (leader/followers reading while
callers send), so it talks TLS through an ``SSLObject`` with memory BIOs instead: encryption
and decryption happen under a short lock; the raw socket I/O happens outside it, and a second
lock keeps ciphertext going out in the order it was produced.

Both can *unwrap*: end TLS with a close_notify each way and hand back the raw connection
and any bytes that followed the peer's close_notify. The relay uses that: a dial's preamble
(with its bearer token) goes over TLS to the router, the bytes after it are an end-to-end
TLS session between client and exporter that the router copies without decrypting.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any, cast

from tether.security import certificate_sha256

__all__ = ["TLSBuffer", "TLSChannel"]

_RAW_CHUNK = 1 << 18
#: Plaintext encrypted at a time: small enough for its ciphertext to reuse heap memory.
_SLICE = 64 << 10
#: Ciphertext handed to one ``sendmsg``.
_BATCH = 256 << 10
#: Reads through poll() before a plain read() is tried again (see ``_receive_raw``).
_EAGER_RETRY = 16


class TLSChannel:
    """The part of the socket API the client uses (``send``, ``recv``, ``settimeout``,
    ``shutdown``, ``close``), over TLS."""

    def __init__(
        self,
        raw: socket.socket,
        context: ssl.SSLContext,
        server_hostname: str | None,
        received: bytes = b"",
    ) -> None:
        self._raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        if received:  # bytes of this session already read off the socket
            self._incoming.write(received)
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )
        self._tls_lock = threading.Lock()
        self._out_lock = threading.Lock()
        self._plain = memoryview(bytearray(_RAW_CHUNK))
        self._cipher = memoryview(bytearray(_RAW_CHUNK))
        #: Everything received has been decrypted: the next ``recv`` starts with the socket.
        self._drained = False
        self._skip_eager = 0
        self._handshake()

    def _handshake(self) -> None:
        self._step_until_done(self._tls.do_handshake, "handshake")

    def _step_until_done(self, step: Callable[[], object], what: str) -> None:
        """Run a TLS ``step`` (handshake, shutdown) until it needs no more bytes from the peer."""
        while True:
            try:
                with self._tls_lock:
                    step()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                data = self._raw.recv(_RAW_CHUNK)
                if not data:
                    raise ConnectionResetError(f"connection closed during the TLS {what}") from None
                with self._tls_lock:
                    self._incoming.write(data)

    def _flush(self) -> None:
        with self._out_lock:
            with self._tls_lock:
                data = self._outgoing.read()
            if data:
                self._send_all([data])

    def send(self, data: Any) -> int:
        return self.sendmsg([data])

    def sendmsg(self, buffers: list[Any]) -> int:
        """Encrypt and send all of ``buffers`` (header and payload need no joining); returns
        their total size.

        Encrypted in slices of ``_SLICE`` bytes, each read out of the BIO and sent before the
        next: a 1 MiB write would come back as a fresh 1 MiB buffer (page faults on every
        call), and the TLS lock is released between slices so the reader can decrypt.
        """
        total = 0
        pending: list[bytes] = []
        size = 0
        with self._out_lock:
            for buffer in buffers:
                view = memoryview(buffer).cast("B")
                total += len(view)
                for start in range(0, len(view), _SLICE):
                    with self._tls_lock:
                        self._tls.write(view[start : start + _SLICE])
                        out = self._outgoing.read()
                    pending.append(out)
                    size += len(out)
                    if size >= _BATCH:
                        self._send_all(pending)
                        pending, size = [], 0
            if pending:
                self._send_all(pending)
        return total

    def _send_all(self, pieces: list[bytes]) -> None:
        # Not sendall(): its time-out would drop half a TLS record. The time-out set on the
        # raw socket is the client's keepalive tick for reading; a dead peer is detected by
        # the reader, which shuts the socket down and so ends this loop with an OSError.
        pending: list[Any] = pieces
        while pending:
            try:
                # writev first: a socket with a time-out polls before every sendmsg, one
                # more system call per call when the send buffer has room (nearly always).
                # fileno() each time: -1 (EBADF) once closed, never a reused descriptor.
                count = os.writev(self._raw.fileno(), pending)
            except BlockingIOError:
                try:
                    count = self._raw.sendmsg(pending)
                except TimeoutError:
                    continue
            while pending and count >= len(pending[0]):
                count -= len(pending[0])
                pending = pending[1:]
            if count:
                pending[0] = memoryview(pending[0])[count:]

    def recv(self, size: int, flags: int = 0) -> bytes:
        """Like ``socket.recv``; ``flags`` go to the raw socket (``MSG_DONTWAIT``).

        Returns as much plaintext as is decrypted and fits, not one TLS record (16 KiB) per
        call: fewer trips through the caller's read loop. Only one thread reads at a time,
        so the read buffers are reused.
        """
        size = min(size, _RAW_CHUNK)
        plain = self._plain
        tls = self._tls
        incoming = self._incoming
        while True:
            if self._drained:
                self._receive_raw(flags)
            filled = 0
            closed = False
            with self._tls_lock:
                try:
                    while filled < size:
                        # With a buffer, read() returns a count (typeshed says bytes).
                        count = cast(int, tls.read(size - filled, plain[filled:size]))
                        if not count:
                            closed = True
                            break
                        filled += count
                        if not incoming.pending and not tls.pending():
                            # Nothing left to decrypt: spare the read that would raise
                            # SSLWantReadError (an exception with a formatted message).
                            self._drained = True
                            break
                    else:
                        self._drained = False
                except ssl.SSLWantReadError:
                    self._drained = True
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    closed = True
                answer = self._outgoing.pending  # e.g. a key update to acknowledge
            if answer:
                self._flush()
            if filled:
                return bytes(plain[:filled])
            if closed:
                self._drained = False
                return b""

    def _receive_raw(self, flags: int) -> None:
        """Read ciphertext from the socket into the TLS object (may raise BlockingIOError,
        TimeoutError)."""
        cipher = self._cipher
        received = -1
        if self._raw.gettimeout():  # the descriptor is non-blocking
            if flags == socket.MSG_DONTWAIT:
                # recv() would poll for up to the time-out first, despite MSG_DONTWAIT.
                received = os.readv(self._raw.fileno(), [cipher])
            elif flags:
                pass
            elif self._skip_eager:
                self._skip_eager -= 1
            else:
                # A socket with a time-out polls before every recv: one more system call
                # when the answer is already there (usual when the peer ran on this CPU
                # while we sent). So read() straight first, until that finds nothing; then
                # only now and then (one read in _EAGER_RETRY): the peer answers from
                # another CPU.
                try:
                    received = os.readv(self._raw.fileno(), [cipher])
                except BlockingIOError:
                    self._skip_eager = _EAGER_RETRY
        if received < 0:
            received = self._raw.recv_into(cipher, _RAW_CHUNK, flags)
        with self._tls_lock:
            if received:
                self._incoming.write(cipher[:received])
            else:
                self._incoming.write_eof()
            self._drained = False

    def settimeout(self, timeout: float | None) -> None:
        self._raw.settimeout(timeout)

    def shutdown(self, how: int) -> None:
        self._raw.shutdown(how)

    def close(self) -> None:
        self._raw.close()

    def getpeercert(self) -> Any:
        return self._tls.getpeercert()

    def fileno(self) -> int:
        return self._raw.fileno()

    def peer_certificate_sha256(self) -> str:
        """The SHA-256 of the peer's certificate (DER), hex; ``""`` when it sent none."""
        return certificate_sha256(self._tls.getpeercert(binary_form=True))

    def unwrap(self) -> tuple[socket.socket, bytes]:
        """End TLS: wait for the peer's close_notify, answer it, and return the raw socket
        with the bytes read past the close_notify (the start of what follows TLS).

        Call it only once the peer has sent all its TLS data and no other thread uses this
        channel.

        Raises:
            ConnectionResetError: the peer closed the connection first.
            ssl.SSLError: the peer's TLS is broken.
        """
        self._step_until_done(self._tls.unwrap, "shutdown")
        with self._tls_lock:
            rest = self._incoming.read()
        return self._raw, rest


class TLSBuffer:
    """TLS as a sans-IO object: ciphertext in, plaintext out, and back.

    Give what the socket read to :meth:`receive_data` (it returns the plaintext decrypted),
    queue plaintext with :meth:`send`, and write :meth:`data_to_send` to the socket after
    each. :meth:`unwrap` ends TLS (it sends close_notify); :attr:`unwrapped` turns true once
    both close_notify have crossed, and :meth:`raw_leftover` then returns the bytes received
    after the peer's.

    Raises ``ssl.SSLError`` from :meth:`receive_data` when the peer's TLS is broken.
    """

    def __init__(
        self,
        context: ssl.SSLContext,
        *,
        server_side: bool,
        server_hostname: str | None = None,
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming,
            self._outgoing,
            server_side=server_side,
            server_hostname=server_hostname,
        )
        self._pending: list[bytes] = []
        self.handshake_done = False
        #: the peer sent close_notify: nothing more will be decrypted.
        self.peer_closed = False
        #: :meth:`unwrap` was called: our close_notify is out (or goes out after the handshake).
        self.unwrapping = False
        #: both close_notify crossed: TLS is over, the connection carries raw bytes.
        self.unwrapped = False

    def start(self) -> None:
        """Begin the handshake (a client's first flight is then in :meth:`data_to_send`)."""
        self._advance()

    def receive_data(self, data: bytes) -> bytes:
        """Feed bytes read from the socket (``b""``: end of file); returns new plaintext."""
        if self.unwrapped:
            raise RuntimeError("TLS is unwrapped; the bytes are raw now")
        if data:
            self._incoming.write(data)
        else:
            self._incoming.write_eof()
        return self._advance()

    def send(self, data: bytes) -> None:
        """Encrypt ``data`` (queued until the handshake is done)."""
        if self.unwrapping:
            raise RuntimeError("cannot send over TLS after unwrap()")
        if self.handshake_done:
            self._tls.write(data)
        else:
            self._pending.append(data)

    def data_to_send(self) -> bytes:
        """Ciphertext to write to the socket now."""
        return self._outgoing.read()

    def unwrap(self) -> None:
        """Send close_notify; :attr:`unwrapped` once the peer's has arrived too."""
        self.unwrapping = True
        self._advance()

    def raw_leftover(self) -> bytes:
        """(Once :attr:`unwrapped`.) The bytes received after the peer's close_notify."""
        return self._incoming.read()

    def _advance(self) -> bytes:
        if not self.handshake_done:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.handshake_done = True
            for data in self._pending:
                self._tls.write(data)
            self._pending.clear()
        plaintext = b"" if self.peer_closed else self._read_plaintext()
        if self.unwrapping and not self.unwrapped:
            try:
                self._tls.unwrap()
            except ssl.SSLWantReadError:
                return plaintext
            self.unwrapped = True
        return plaintext

    def _read_plaintext(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self._tls.read(_RAW_CHUNK)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.peer_closed = True
                break
            if not chunk:
                self.peer_closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks)
