"""``TLSChannel``: TLS over a blocking socket, safe for one reader and one writer at once.

An ``ssl.SSLSocket`` must not be read by one thread while another writes it (both would use
one OpenSSL object). The blocking client does exactly that (leader/followers reading while
callers send), so it talks TLS through an ``SSLObject`` with memory BIOs instead: encryption
and decryption happen under a short lock; the raw socket I/O happens outside it, and a second
lock keeps ciphertext going out in the order it was produced.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any

__all__ = ["TLSChannel"]

_RAW_CHUNK = 1 << 18


class TLSChannel:
    """The part of the socket API the client uses (``send``, ``recv``, ``settimeout``,
    ``shutdown``, ``close``), over TLS."""

    def __init__(
        self, raw: socket.socket, context: ssl.SSLContext, server_hostname: str | None
    ) -> None:
        self._raw = raw
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(
            self._incoming, self._outgoing, server_hostname=server_hostname
        )
        self._tls_lock = threading.Lock()
        self._out_lock = threading.Lock()
        self._handshake()

    def _handshake(self) -> None:
        while True:
            try:
                with self._tls_lock:
                    self._tls.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                data = self._raw.recv(_RAW_CHUNK)
                if not data:
                    raise ConnectionResetError(
                        "connection closed during the TLS handshake"
                    ) from None
                with self._tls_lock:
                    self._incoming.write(data)

    def _flush(self) -> None:
        with self._out_lock:
            with self._tls_lock:
                data = self._outgoing.read()
            if data:
                self._send_all(data)

    def send(self, data: Any) -> int:
        with self._out_lock:
            with self._tls_lock:
                written = self._tls.write(data)
                out = self._outgoing.read()
            self._send_all(out)
        return written

    def _send_all(self, data: bytes) -> None:
        # Not sendall(): its time-out would drop half a TLS record. The time-out set on the
        # raw socket is the client's keepalive tick for reading; a dead peer is detected by
        # the reader, which shuts the socket down and so ends this loop with an OSError.
        view = memoryview(data)
        while view:
            try:
                view = view[self._raw.send(view) :]
            except TimeoutError:
                continue

    def recv(self, size: int, flags: int = 0) -> bytes:
        """Like ``socket.recv``; ``flags`` go to the raw socket (``MSG_DONTWAIT``)."""
        while True:
            with self._tls_lock:
                data: bytes | None
                try:
                    data = self._tls.read(size)
                except ssl.SSLWantReadError:
                    data = None
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    data = b""
                answer = self._outgoing.pending  # e.g. a key update to acknowledge
            if answer:
                self._flush()
            if data is not None:
                return data
            raw = self._raw.recv(_RAW_CHUNK, flags)  # may raise BlockingIOError, TimeoutError
            with self._tls_lock:
                if raw:
                    self._incoming.write(raw)
                else:
                    self._incoming.write_eof()

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
