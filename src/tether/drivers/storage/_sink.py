"""The exporter side of an image write and read: byte-stream objects over a file or device.

Theory of operation. :class:`ImageSink` is what a ``write`` byte stream yields. The wire
layer calls ``send`` with each received chunk (zero-copy views of immutable buffers, so they
may be kept); chunks are batched and handed to one writer thread, in order, which hashes the
received bytes, decodes them (compression detected from the first bytes), hashes and writes
the output. At most ``_MAX_PENDING`` batches are in flight, so a slow device pushes back on
the client through the stream's flow control instead of filling memory. A client that opens
the write with ``trailer=True`` ends its data with the sha256 of what it sent; the sink holds
the last 32 bytes back and, at the client's EOF, compares them with the hash of what it
received. Then it finishes the decoder, optionally syncs, optionally reads the written bytes
back from the device, and answers one JSON line (``receive``) and ends its side.

:class:`ImageSource` is what a ``read`` byte stream yields: chunks read by a thread.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import json
import os
import stat
from typing import Any

from ._codec import MAGIC_BYTES, Decoder, decode_errors, detect_compression, make_decoder
from ._errors import ImageVerifyError, StorageError

__all__ = ["TRAILER", "ImageSink", "ImageSource", "storage_size"]

_BATCH = 8 << 20
_MAX_PENDING = 2
_READ = 4 << 20
#: Bytes of the digest a client appends when it opens a write with ``trailer=True``.
TRAILER = 32


def storage_size(path: str) -> int:
    """Size in bytes of a regular file or block device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if stat.S_ISBLK(os.fstat(fd).st_mode):
            return os.lseek(fd, 0, os.SEEK_END)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def _describe(exc: OSError, path: str, doing: str) -> StorageError:
    return StorageError(f"{doing} {path}: {exc.strerror or exc}")


class ImageSink:
    """Receives an image and writes it to ``path`` from offset 0 (see the module docstring).

    Args:
        path: regular file (created when missing, never shrunk) or block device.
        compression: ``auto`` (magic bytes), ``none``, ``gzip``, ``xz``, ``zstd`` or ``bzip2``.
        expected_sha256: hex sha256 the written (decoded) bytes must have.
        verify: after writing, flush the target, drop it from the page cache and read the
            written bytes back from the device, comparing their sha256.
        sync: fsync before answering.
        trailer: the client ends the stream with the raw sha256 (32 bytes) of what it sent;
            the sink holds the last 32 bytes back and compares them with what it received.
    """

    accepts_buffers = True

    def __init__(
        self,
        path: str,
        *,
        compression: str = "auto",
        expected_sha256: str | None = None,
        verify: bool = False,
        sync: bool = True,
        trailer: bool = False,
    ) -> None:
        if compression != "auto":
            make_decoder(compression)  # validates the name
        self.path = path
        self._compression = compression
        self._expected = expected_sha256.lower() if expected_sha256 else None
        self._verify = verify
        self._trailer: bytes | None = b"" if trailer else None
        self._sync = sync
        self._fd = -1
        self._executor = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="tether-image-write"
        )
        self._pending: collections.deque[asyncio.Future[None]] = collections.deque()
        self._batch: list[bytes | memoryview] = []
        self._batch_size = 0
        self._head = bytearray()
        self._kind: str | None = None
        self._decoder: Decoder | None = None
        self._received_hash = hashlib.sha256()
        self._written_hash = self._received_hash
        self.received = 0
        self.written = 0
        self._answer: bytes | None = None
        self._done = asyncio.Event()
        self._closed = False

    async def open(self) -> ImageSink:
        """Open the target for writing (in a thread: a device may block)."""
        try:
            self._fd = await asyncio.get_running_loop().run_in_executor(
                self._executor, lambda: os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            )
        except OSError as exc:
            self._executor.shutdown(wait=False)
            raise _describe(exc, self.path, "cannot open") from exc
        return self

    # -- byte stream --------------------------------------------------------------------------

    async def send(self, data: bytes | memoryview) -> None:
        if self._trailer is None:
            await self._accept(data)
            return
        # Hold the last TRAILER bytes back: they may be the client's digest, not image data.
        if len(data) >= TRAILER:
            if self._trailer:
                await self._accept(self._trailer)
            self._trailer = bytes(data[-TRAILER:])
            await self._accept(data[:-TRAILER])
        else:
            held = self._trailer + bytes(data)
            self._trailer = held[-TRAILER:]
            await self._accept(held[:-TRAILER])

    async def _accept(self, data: bytes | memoryview) -> None:
        if not data:
            return
        if self._kind is None:
            self._head += data
            if len(self._head) < MAGIC_BYTES:
                return
            data = bytes(self._head)
            self._decide(data)
        self._batch.append(data)
        self._batch_size += len(data)
        if self._batch_size >= _BATCH:
            await self._flush()

    async def send_eof(self) -> None:
        if self._kind is None:
            head = bytes(self._head)
            self._decide(head)
            if head:
                self._batch.append(head)
        await self._flush()
        while self._pending:
            await self._pending.popleft()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, self._finish)
        self._answer = (json.dumps(result) + "\n").encode()
        self._done.set()

    @property
    def finished(self) -> bool:
        """True once the image is written, verified and the answer is ready."""
        return self._done.is_set()

    async def receive(self) -> bytes:
        await self._done.wait()
        answer, self._answer = self._answer, b""
        return answer or b""

    async def aclose(self) -> None:
        """Close the target; waits for the writer thread to finish its current batch."""
        if self._closed:
            return
        self._closed = True
        for future in self._pending:
            future.cancel()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._executor.shutdown, True)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- internals ----------------------------------------------------------------------------

    def _decide(self, head: bytes) -> None:
        kind = detect_compression(head) if self._compression == "auto" else self._compression
        self._kind = kind
        self._decoder = make_decoder(kind)
        if self._decoder is not None:
            self._written_hash = hashlib.sha256()

    async def _flush(self) -> None:
        if not self._batch:
            return
        batch, self._batch, self._batch_size = self._batch, [], 0
        loop = asyncio.get_running_loop()
        self._pending.append(loop.run_in_executor(self._executor, self._process, batch))
        while len(self._pending) > _MAX_PENDING:
            await self._pending.popleft()

    def _emit(self, data: bytes | memoryview) -> None:
        if self._decoder is not None:
            self._written_hash.update(data)
        view = memoryview(data)
        try:
            while view:
                done = os.write(self._fd, view)
                view = view[done:]
        except OSError as exc:
            at = self.written + len(data) - len(view)
            raise _describe(exc, self.path, f"writing byte {at} of") from exc
        self.written += len(data)

    def _process(self, batch: list[bytes | memoryview]) -> None:
        """Writer thread: hash, decode and write one batch."""
        for chunk in batch:
            self._received_hash.update(chunk)
            if self._decoder is None:
                self._emit(chunk)
            else:
                try:
                    self._decoder.feed(chunk, self._emit)
                except decode_errors() as exc:
                    raise StorageError(
                        f"the {self._kind} image is corrupt near input byte {self.received}: {exc}"
                    ) from exc
            self.received += len(chunk)

    def _finish(self) -> dict[str, Any]:
        """Writer thread: finish decoding, sync, verify; the JSON answer."""
        if self._decoder is not None:
            try:
                self._decoder.finish(self._emit)
            except decode_errors() as exc:
                raise StorageError(f"the {self._kind} image is corrupt at its end: {exc}") from exc
        if self._trailer is not None and len(self._trailer) != TRAILER:
            raise ImageVerifyError(f"the client's sha256 trailer is missing ({self.path})")
        if self.received == 0:
            raise StorageError(f"empty image: no bytes were received for {self.path}")
        if self._trailer is not None and self._trailer != self._received_hash.digest():
            raise ImageVerifyError(
                f"transfer mismatch on {self.path}: received {self.received} bytes with "
                f"sha256 {self._received_hash.hexdigest()}, but the client sent sha256 "
                f"{self._trailer.hex()}"
            )
        written = self._written_hash.hexdigest()
        try:
            if self._sync or self._verify:
                os.fsync(self._fd)
            readback = self._read_back() if self._verify else None
        except OSError as exc:
            raise _describe(exc, self.path, "verifying") from exc
        if readback is not None and readback != written:
            raise ImageVerifyError(
                f"read-back mismatch on {self.path}: wrote {self.written} bytes with sha256 "
                f"{written}, read back {readback}"
            )
        if self._expected is not None and self._expected != written:
            raise ImageVerifyError(
                f"sha256 mismatch on {self.path}: wrote {self.written} bytes with sha256 "
                f"{written}, expected {self._expected}"
            )
        return {
            "bytes": self.written,
            "received": self.received,
            "received_sha256": self._received_hash.hexdigest(),
            "sha256": written,
            "compression": self._kind,
            "verified": readback is not None,
            "target": self.path,
        }

    def _read_back(self) -> str:
        digest = hashlib.sha256()
        fd = os.open(self.path, os.O_RDONLY)
        try:
            # Read from the device, not from what the page cache kept of our writes.
            os.posix_fadvise(fd, 0, self.written, os.POSIX_FADV_DONTNEED)
            offset = 0
            while offset < self.written:
                chunk = os.pread(fd, min(_READ * 2, self.written - offset), offset)
                if not chunk:
                    break
                digest.update(chunk)
                offset += len(chunk)
        finally:
            os.close(fd)
        return digest.hexdigest()


class ImageSource:
    """Sends the first ``size`` bytes of ``path`` (what a ``read`` byte stream yields)."""

    def __init__(self, path: str, size: int | None = None) -> None:
        self.path = path
        self._size = size
        self._fd = -1
        self._offset = 0
        self._end = 0

    async def open(self) -> ImageSource:
        loop = asyncio.get_running_loop()
        try:
            self._fd = await loop.run_in_executor(None, os.open, self.path, os.O_RDONLY)
            total = await loop.run_in_executor(None, storage_size, self.path)
        except OSError as exc:
            raise _describe(exc, self.path, "cannot read") from exc
        if self._size is not None and self._size < 0:
            raise StorageError(f"read size must not be negative (got {self._size})")
        self._end = total if self._size is None else min(self._size, total)
        return self

    @property
    def finished(self) -> bool:
        """True once everything was read."""
        return self._offset >= self._end

    async def receive(self) -> bytes:
        if self._offset >= self._end:
            return b""
        count = min(_READ, self._end - self._offset)
        loop = asyncio.get_running_loop()
        try:
            chunk = await loop.run_in_executor(None, os.pread, self._fd, count, self._offset)
        except OSError as exc:
            raise _describe(exc, self.path, f"reading byte {self._offset} of") from exc
        self._offset += len(chunk)
        if not chunk:
            self._end = self._offset
        return chunk

    async def send(self, data: bytes) -> None:
        raise StorageError("a read stream takes no input")

    async def send_eof(self) -> None:
        return None

    async def aclose(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
