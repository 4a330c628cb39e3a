"""The SSH driver's errors: each a :class:`~tether.errors.DriverError` naming the device.

They are raised on the exporter and cross the wire as ``DriverError`` with
``remote_type = "tether.drivers.ssh.<Name>"``; :class:`~tether.drivers.ssh.SshClient`
raises the same class again on the client, so ``except SshUnreachable`` works on both sides.
No message ever holds a password or key material.
"""

from __future__ import annotations

from typing import Any

from tether.errors import DriverError

__all__ = [
    "SshAuthFailed",
    "SshCommandTimeout",
    "SshDisconnected",
    "SshError",
    "SshForwardRefused",
    "SshHostKeyRefused",
    "SshTransferFailed",
    "SshUnreachable",
    "remote_error",
]


class SshError(DriverError):
    """Something failed on the SSH device (the message names the device and what happened)."""

    def __init__(self, message: str, **details: Any) -> None:
        details.setdefault("remote_type", f"tether.drivers.ssh.{type(self).__name__}")
        super().__init__(message, **details)


class SshUnreachable(SshError, ConnectionError):
    """No SSH connection: refused, no route, unknown host, or no answer within the timeout."""


class SshAuthFailed(SshError, PermissionError):
    """The device refused the credentials (wrong key or password, or the key file is unusable)."""


class SshHostKeyRefused(SshError):
    """The device's host key is not the configured ``host_key`` (both fingerprints named)."""


class SshDisconnected(SshError, ConnectionError):
    """The connection to the device dropped during an operation."""


class SshCommandTimeout(SshError, TimeoutError):
    """A command did not finish within its timeout; it was killed and its channel closed."""


class SshTransferFailed(SshError, OSError):
    """An SFTP ``put`` or ``get`` failed (no such file, permission denied, ...)."""


class SshForwardRefused(SshError, ConnectionError):
    """The device refused to open a connection to the forwarded port."""


_BY_NAME: dict[str, type[SshError]] = {
    f"tether.drivers.ssh.{cls.__name__}": cls
    for cls in (
        SshError,
        SshUnreachable,
        SshAuthFailed,
        SshHostKeyRefused,
        SshDisconnected,
        SshCommandTimeout,
        SshTransferFailed,
        SshForwardRefused,
    )
}


def remote_error(error: DriverError) -> DriverError:
    """``error`` as the SSH error class its ``remote_type`` names (else ``error`` itself)."""
    if isinstance(error, SshError):
        return error
    cls = _BY_NAME.get(error.remote_type)
    if cls is None:
        return error
    return cls(error.message, **error.details)
