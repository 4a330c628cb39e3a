"""Storage: a storage mux (host / DUT / off) and flashers that write images over byte streams.

Images travel as raw bytes on an ``export_stream`` byte stream; gzip, xz, zstd and bzip2 are
detected by magic bytes and decoded on the exporter; both sides hash what they handled and the
exporter reads back what it wrote. The client writes from a local file or an http(s) URL with
a progress bar and returns the throughput.
"""

from ._board import BoardDisk, RunningBoard
from ._client import FlasherClient, StorageMuxClient
from ._codec import detect_compression
from ._driver import Flasher, MockFlasher, MockStorageMux, StorageMux
from ._errors import ImageSourceError, ImageVerifyError, StorageError, StorageModeError
from ._interface import Compression, FlasherInterface, StorageMuxInterface, WriteResult

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
    "StorageMuxClient",
    "StorageMuxInterface",
    "WriteResult",
    "detect_compression",
]
