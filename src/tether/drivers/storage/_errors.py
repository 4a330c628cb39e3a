from __future__ import annotations

from tether.errors import TetherError

__all__ = ["ImageSourceError", "ImageVerifyError", "StorageError", "StorageModeError"]


class StorageError(TetherError):
    """Writing or reading an image failed (the message says which file or device, and why)."""


class StorageModeError(StorageError, RuntimeError):
    """The storage mux is in the wrong mode for the request (e.g. a write while it is ``dut``)."""


class ImageVerifyError(StorageError):
    """The sha256 of what was written does not match what was sent or what was expected."""


class ImageSourceError(StorageError):
    """The image could not be read on the client (missing file, HTTP error)."""
