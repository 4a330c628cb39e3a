from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

from pydantic import BaseModel

from tether.driver import Interface

__all__ = ["Compression", "FlasherInterface", "StorageMuxInterface", "WriteResult"]

#: How ``write`` decodes the bytes it receives: ``auto`` detects gzip, xz, zstd and bzip2 by
#: their magic bytes and passes anything else through unchanged.
Compression = Literal["auto", "none", "gzip", "xz", "zstd", "bzip2"]


class WriteResult(BaseModel):
    """What one image write did.

    Attributes:
        bytes: bytes written to the storage (after decompression).
        sent: bytes that went over the wire (the image as the client read it).
        compression: the compression that was decoded (``none`` when the image was raw).
        sha256: hex sha256 of the bytes written (checked against a read-back when verified).
        verified: whether the exporter read the written bytes back from the device and
            compared them (``write(verify=True)``).
        seconds: wall-clock time of the write, as measured by the client.
        mb_s: ``bytes / seconds`` in MB/s (10**6 bytes per second).
        target: the file or device written.
    """

    bytes: int
    sent: int
    compression: str
    sha256: str
    verified: bool
    seconds: float
    mb_s: float
    target: str


class StorageMuxInterface(Interface):
    """A storage device that is switched between the exporter host and the DUT.

    Writes and reads need the ``host`` position. ``write`` and ``read`` are byte streams: the
    image travels as raw bytes, never as msgpack calls.
    """

    name = "tether.storage_mux"
    version = 1
    client = "tether.drivers.storage.StorageMuxClient"

    @abstractmethod
    async def host(self) -> None:
        """Connect the storage to the exporter host."""

    @abstractmethod
    async def dut(self) -> None:
        """Connect the storage to the device under test."""

    @abstractmethod
    async def off(self) -> None:
        """Disconnect the storage from both."""

    @abstractmethod
    async def status(self) -> str:
        """``"host"``, ``"dut"`` or ``"off"``."""

    @abstractmethod
    def write(
        self,
        compression: Compression = "auto",
        sha256: str | None = None,
        verify: bool = False,
        trailer: bool = False,
    ) -> AbstractAsyncContextManager[Any]:
        """Byte stream: the image in, one JSON result line out after the client's EOF."""

    @abstractmethod
    def read(self, size: int | None = None) -> AbstractAsyncContextManager[Any]:
        """Byte stream: the storage's first ``size`` bytes (default: all of it) out."""


class FlasherInterface(Interface):
    """Writes images to a DUT's storage, taking care of power and the storage mux."""

    name = "tether.flasher"
    version = 1
    client = "tether.drivers.storage.FlasherClient"

    @abstractmethod
    def write(
        self,
        compression: Compression = "auto",
        sha256: str | None = None,
        verify: bool = False,
        trailer: bool = False,
    ) -> AbstractAsyncContextManager[Any]:
        """Byte stream: flash the image that comes in; one JSON result line out."""

    @abstractmethod
    def read(self, size: int | None = None) -> AbstractAsyncContextManager[Any]:
        """Byte stream: read the DUT's storage back."""
