"""Addresses and sockets: ``unix:///path``, ``tcp://host:port``, ``tls://host:port``.

The only module of ``tether.wire`` that touches sockets and ssl; OS errors are translated to
:class:`~tether.errors.ConnectFailed` here, once.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from tether.errors import ConfigError, ConnectFailed

from ._tls import TLSChannel

__all__ = ["Address", "connect_socket", "map_connect_errors", "parse_address"]


@dataclass(frozen=True, slots=True)
class Address:
    scheme: str  # "unix", "tcp" or "tls"
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        return f"{self.scheme}://{self.host}:{self.port}"


def parse_address(url: str) -> Address:
    """Parse a tether address.

    Raises:
        ConfigError: the scheme is unknown or the host/port/path is missing.
    """
    parts = urlsplit(url)
    if parts.scheme == "unix":
        path = (parts.netloc + parts.path) if parts.netloc else parts.path
        if not path:
            raise ConfigError(f"{url!r}: a unix address needs a path (unix:///run/tether.sock)")
        return Address("unix", path=path)
    if parts.scheme in ("tcp", "tls"):
        try:
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{url!r}: {exc}") from None
        if not parts.hostname or port is None:
            raise ConfigError(f"{url!r}: expected {parts.scheme}://HOST:PORT")
        return Address(parts.scheme, host=parts.hostname, port=port)
    raise ConfigError(f"{url!r}: unknown scheme {parts.scheme!r} (expected unix, tcp or tls)")


@contextlib.contextmanager
def map_connect_errors(what: str) -> Iterator[None]:
    """Translate OS and ssl errors raised while connecting into ConnectFailed."""
    try:
        yield
    except ssl.SSLError as exc:
        raise ConnectFailed(f"{what}: TLS handshake failed: {exc.reason or exc}") from exc
    except OSError as exc:
        raise ConnectFailed(f"{what}: {exc.strerror or exc}") from exc


def connect_socket(
    address: Address, *, ssl_context: ssl.SSLContext | None = None, timeout: float = 10.0
) -> socket.socket | TLSChannel:
    """Open a connected, blocking socket to ``address`` (a :class:`TLSChannel` for ``tls://``,
    safe for the client's concurrent reader and writers)."""
    with map_connect_errors(f"cannot connect to {address}"):
        if address.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(address.path)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection((address.host, address.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if address.scheme == "tls":
            if ssl_context is None:
                ssl_context = ssl.create_default_context()
            try:
                return TLSChannel(sock, ssl_context, address.host)
            except BaseException:
                sock.close()
                raise
        return sock
