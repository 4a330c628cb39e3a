"""One SSH connection to the device, opened on first use and kept for the session.

Theory of operation. :class:`SshLink` holds at most one asyncssh connection. ``connection()``
returns it, opening it when there is none or when the last one dropped (asyncssh reports that
through :meth:`_Client.connection_lost`; keepalives notice a silent drop). Opening is
serialised by a lock, so concurrent calls share one connection. Every foreign exception
(asyncssh's, the OS's, a timeout) becomes an :class:`SshError` in one place,
:func:`ssh_errors`, naming the device and what was being done.

The host key is checked by asyncssh calling :meth:`_Client.validate_host_public_key` with the
presented key (no ``known_hosts`` file, no ``~/.ssh/config``, no agent: only the exporter
config counts). The key that was refused is remembered for the error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncssh

from ._errors import (
    SshAuthFailed,
    SshDisconnected,
    SshError,
    SshForwardRefused,
    SshHostKeyRefused,
    SshTransferFailed,
    SshUnreachable,
)
from ._hostkey import HostKeyPin, fingerprint

__all__ = ["Credentials", "SshLink", "Target", "ssh_errors"]

#: Host key algorithms to ask for, by the key type of a configured key line.
_HOST_KEY_ALGS = {
    "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
}
_CLOSE_TIMEOUT = 5.0
#: AES-GCM first: OpenSSL's AES (with AES-NI) costs asyncssh least per byte; ChaCha20 (and
#: the rest of asyncssh's defaults) for servers without it.
_CIPHERS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]


def _encryption_algs() -> list[str]:
    from asyncssh.encryption import get_default_encryption_algs

    defaults = [alg.decode() for alg in get_default_encryption_algs()]
    return [alg for alg in _CIPHERS if alg in defaults] + [
        alg for alg in defaults if alg not in _CIPHERS
    ]


@dataclass(frozen=True, slots=True)
class Target:
    """The device, as error messages name it."""

    name: str
    user: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"ssh {self.name} ({self.user}@{self.host}:{self.port})"


@dataclass(frozen=True, slots=True)
class Credentials:
    """How to log in; ``repr`` shows no secret."""

    key_file: str | None
    password: str | None

    def __repr__(self) -> str:
        shown = "'***'" if self.password else None
        return f"Credentials(key_file={self.key_file!r}, password={shown})"


class _Client(asyncssh.SSHClient):
    def __init__(self, pin: HostKeyPin) -> None:
        self.pin = pin
        self.presented: tuple[str, str] | None = None
        self.lost = False

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        blob = key.public_data
        self.presented = (key.get_algorithm(), fingerprint(blob))
        return self.pin.matches(blob)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True


@contextlib.contextmanager
def ssh_errors(target: Target, doing: str, client: _Client | None = None) -> Iterator[None]:
    """Translate asyncssh, OS and timeout errors met while ``doing`` into :class:`SshError`."""
    try:
        yield
    except SshError:
        raise
    except asyncssh.HostKeyNotVerifiable:
        presented = client.presented if client is not None else None
        expected = client.pin.fingerprint if client is not None else "the configured key"
        got = f"{presented[1]} ({presented[0]})" if presented else "a key it could not check"
        raise SshHostKeyRefused(
            f"{target}: host key refused: the device presented {got}, "
            f"the config's host_key is {expected}"
        ) from None
    except asyncssh.PermissionDenied as exc:
        raise SshAuthFailed(f"{target}: {doing}: login refused: {exc.reason}") from None
    except asyncssh.ChannelOpenError as exc:
        raise SshForwardRefused(f"{target}: {doing}: the device refused: {exc.reason}") from None
    except asyncssh.SFTPError as exc:
        raise SshTransferFailed(f"{target}: {doing}: {exc.reason}") from None
    except (asyncssh.ConnectionLost, asyncssh.DisconnectError, BrokenPipeError) as exc:
        reason = getattr(exc, "reason", "") or str(exc) or "connection lost"
        raise SshDisconnected(f"{target}: {doing}: the connection dropped: {reason}") from None
    except (asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
        raise SshAuthFailed(f"{target}: {doing}: the key_file is unusable: {exc}") from None
    except OSError as exc:
        if exc.errno and exc.errno > 0:
            reason = os.strerror(exc.errno)
        else:
            reason = exc.strerror or str(exc) or type(exc).__name__
        if exc.errno in (errno.ENOENT, errno.EACCES) and exc.filename:
            raise SshAuthFailed(f"{target}: {doing}: {exc.filename}: {reason}") from None
        raise SshUnreachable(f"{target}: {doing}: {reason}") from None


class SshLink:
    """The session's connection to one device (see the module docstring).

    Args:
        target: names the device in errors.
        credentials: key file and/or password.
        pin: the host key the device must present.
        connect_timeout: seconds for TCP, the SSH handshake and the login together.
        keepalive: seconds between keepalive probes (three unanswered ones drop the connection).
        options: further asyncssh connection options.
    """

    def __init__(
        self,
        target: Target,
        credentials: Credentials,
        pin: HostKeyPin,
        *,
        connect_timeout: float,
        keepalive: float,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.target = target
        self._credentials = credentials
        self._pin = pin
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._options = dict(options or {})
        self._conn: asyncssh.SSHClientConnection | None = None
        self._client: _Client | None = None
        self._lock = asyncio.Lock()
        self._key: asyncssh.SSHKey | None = None
        #: Connections opened so far (a reconnect makes it grow).
        self.opened = 0

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._client is not None and not self._client.lost

    async def connection(self) -> asyncssh.SSHClientConnection:
        """The live connection, opened (again) when needed.

        Raises:
            SshUnreachable, SshAuthFailed, SshHostKeyRefused: as named.
        """
        if self.connected:
            assert self._conn is not None
            return self._conn
        async with self._lock:
            if not self.connected:
                await self._drop()
                self._conn, self._client = await self._open()
                self.opened += 1
            assert self._conn is not None
            return self._conn

    @property
    def current(self) -> asyncssh.SSHClientConnection | None:
        """The connection now held (live or not), if any."""
        return self._conn

    def forget(self) -> None:
        """Mark the connection dead (an operation found it broken): the next use reconnects."""
        if self._client is not None:
            self._client.lost = True

    def _load_key(self) -> asyncssh.SSHKey | None:
        path = self._credentials.key_file
        if path is None:
            return None
        if self._key is None:
            with ssh_errors(self.target, "reading the key_file"):
                self._key = asyncssh.read_private_key(path)
        return self._key

    async def _open(self) -> tuple[asyncssh.SSHClientConnection, _Client]:
        key = self._load_key()
        client = _Client(self._pin)
        options: dict[str, Any] = {
            "username": self.target.user,
            "known_hosts": ([], [], []),  # none trusted: validate_host_public_key decides
            "config": None,  # never ~/.ssh/config
            "agent_path": None,
            "client_keys": [key] if key is not None else None,
            "password": self._credentials.password,
            "gss_kex": False,
            "gss_auth": False,
            "host_based_auth": False,
            "keepalive_interval": self._keepalive,
            "keepalive_count_max": 3,
            "encryption_algs": _encryption_algs(),
            **self._options,
        }
        if self._pin.algorithm is not None:
            options["server_host_key_algs"] = _HOST_KEY_ALGS.get(
                self._pin.algorithm, [self._pin.algorithm]
            )
        target = self.target
        with ssh_errors(target, "connecting", client):
            try:
                async with asyncio.timeout(self._connect_timeout):
                    conn, _ = await asyncssh.create_connection(
                        lambda: client, target.host, target.port, **options
                    )
            except TimeoutError:
                raise SshUnreachable(
                    f"{target}: connecting: no SSH session within {self._connect_timeout:g} s"
                ) from None
        return conn, client

    async def _drop(self) -> None:
        conn, self._conn, self._client = self._conn, None, None
        if conn is not None:
            conn.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_CLOSE_TIMEOUT):
                    await conn.wait_closed()

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        async with self._lock:
            await self._drop()
