from __future__ import annotations

from typing import Any

from tether.errors import DriverError, DriverTimeout, TetherError

__all__ = [
    "ImageSourceError",
    "ImageVerifyError",
    "StorageError",
    "StorageModeError",
    "StorageSwitchError",
    "StorageSwitchTimeout",
]


class StorageError(TetherError):
    """Writing or reading an image failed (the message says which file or device, and why)."""


class StorageModeError(StorageError, RuntimeError):
    """The storage mux is in the wrong mode for the request (e.g. a write while it is ``dut``)."""


class ImageVerifyError(StorageError):
    """The sha256 of what was written does not match what was sent or what was expected."""


class ImageSourceError(StorageError):
    """The image could not be read on the client (missing file, HTTP error)."""


class StorageSwitchError(StorageError, DriverError):
    """The mux hardware did not switch: its command failed, the device is missing or refused.

    A :class:`~tether.errors.DriverError` too: it crosses the wire as one and
    :class:`StorageMuxClient` raises this class again. The message names the mux and the mode.
    """

    def __init__(self, message: str, **details: Any) -> None:
        details.setdefault("remote_type", f"tether.drivers.storage.{type(self).__name__}")
        DriverError.__init__(self, message, **details)


class StorageSwitchTimeout(StorageSwitchError, DriverTimeout):
    """A switch (or its status command, or the device appearing) took longer than ``timeout``."""
