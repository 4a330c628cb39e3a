"""Storage: a storage mux (host / DUT / off) and flashers that write images over byte streams.

Images travel as raw bytes on an ``export_stream`` byte stream; gzip, xz, zstd and bzip2 are
detected by magic bytes and decoded on the exporter; both sides hash what they handled and the
exporter reads back what it wrote. The client writes from a local file or an http(s) URL with
a progress bar and returns the throughput.

Muxes: :class:`StorageMux` switches with configured commands, :class:`UsbSdMux` drives a
USB-SD-Mux through the ``usbsdmux`` library (``tether[usbsdmux]``), :class:`MockStorageMux` only
remembers a mode (tests, demos); all share :class:`StorageMuxBase` (the file or device side).
"""

from ._board import BoardDisk, RunningBoard
from ._client import FlasherClient, StorageMuxClient
from ._codec import detect_compression
from ._command import StorageMux
from ._driver import Flasher, MockFlasher, MockStorageMux, StorageMuxBase
from ._errors import (
    ImageSourceError,
    ImageVerifyError,
    StorageError,
    StorageModeError,
    StorageSwitchError,
    StorageSwitchTimeout,
)
from ._interface import Compression, FlasherInterface, StorageMuxInterface, WriteResult
from ._usbsdmux import UsbSdMux

__all__ = [
    "BoardDisk",
    "Compression",
    "Flasher",
    "FlasherClient",
    "FlasherInterface",
    "ImageSourceError",
    "ImageVerifyError",
    "MockFlasher",
    "MockStorageMux",
    "RunningBoard",
    "StorageError",
    "StorageModeError",
    "StorageMux",
    "StorageMuxBase",
    "StorageMuxClient",
    "StorageMuxInterface",
    "StorageSwitchError",
    "StorageSwitchTimeout",
    "UsbSdMux",
    "WriteResult",
    "detect_compression",
]
