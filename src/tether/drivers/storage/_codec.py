"""Streaming decoders for compressed images, picked by magic bytes.

Each decoder is fed compressed chunks and hands bounded pieces of output (at most ``_PIECE``
bytes) to an ``emit`` callback, so a chunk of a highly compressed image (a disk full of zeros)
never turns into gigabytes in memory. Concatenated streams (``cat a.gz b.gz``) decode as one.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import Any, Protocol

import zstandard

from ._errors import StorageError

__all__ = ["MAGIC_BYTES", "Decoder", "decode_errors", "detect_compression", "make_decoder"]

_PIECE = 4 << 20
MAGIC_BYTES = 6

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
)

Emit = Callable[[bytes], None]


def detect_compression(head: bytes) -> str:
    """The compression whose magic bytes start ``head``, or ``"none"``."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "none"


class Decoder(Protocol):
    def feed(self, data: bytes | memoryview, emit: Emit) -> None: ...

    def finish(self, emit: Emit) -> None: ...


class _Gzip:
    def __init__(self) -> None:
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._started = False

    def feed(self, data: bytes | memoryview, emit: Emit) -> None:
        buf: bytes | memoryview = data
        while buf:
            self._started = True
            out = self._d.decompress(buf, _PIECE)
            if out:
                emit(out)
            if self._d.eof:
                buf = self._d.unused_data
                self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._started = False
                if buf.strip(b"\x00") == b"":  # tar-style zero padding after the last member
                    return
            else:
                buf = self._d.unconsumed_tail
                if not buf and not out:
                    return
        self._drain(emit)

    def _drain(self, emit: Emit) -> None:
        while out := self._d.decompress(b"", _PIECE):
            emit(out)

    def finish(self, emit: Emit) -> None:
        if self._started and not self._d.eof:
            raise StorageError("the gzip image ends early (truncated or corrupt)")


class _LzmaLike:
    """xz and bzip2: both decompressors take ``max_length`` and report ``needs_input``."""

    def __init__(self, factory: Callable[[], Any], name: str) -> None:
        self._factory = factory
        self._name = name
        self._d = factory()
        self._started = False

    def feed(self, data: bytes | memoryview, emit: Emit) -> None:
        buf = bytes(data)
        while buf:
            self._started = True
            out = self._d.decompress(buf, max_length=_PIECE)
            if out:
                emit(out)
            while not self._d.eof and not self._d.needs_input:
                out = self._d.decompress(b"", max_length=_PIECE)
                if out:
                    emit(out)
            if not self._d.eof:
                return
            buf = self._d.unused_data
            self._d = self._factory()
            self._started = False
            if buf.strip(b"\x00") == b"":
                return

    def finish(self, emit: Emit) -> None:
        if self._started and not self._d.eof:
            raise StorageError(f"the {self._name} image ends early (truncated or corrupt)")


class _Zstd:
    def __init__(self) -> None:
        self._sink = _EmitWriter()
        self._writer = zstandard.ZstdDecompressor().stream_writer(
            self._sink,  # type: ignore[arg-type]  # only write() is used
            write_size=_PIECE,
            closefd=False,
        )

    def feed(self, data: bytes | memoryview, emit: Emit) -> None:
        self._sink.emit = emit
        self._writer.write(data)

    def finish(self, emit: Emit) -> None:
        self._sink.emit = emit
        self._writer.flush()  # type: ignore[no-untyped-call]


class _EmitWriter:
    emit: Emit | None = None

    def write(self, data: bytes) -> int:
        assert self.emit is not None
        self.emit(bytes(data))
        return len(data)


def make_decoder(name: str) -> Decoder | None:
    """A fresh decoder for ``name`` (``None`` for ``"none"``)."""
    if name == "none":
        return None
    if name == "gzip":
        return _Gzip()
    if name == "xz":
        return _LzmaLike(lzma.LZMADecompressor, "xz")
    if name == "bzip2":
        return _LzmaLike(bz2.BZ2Decompressor, "bzip2")
    if name == "zstd":
        return _Zstd()
    raise ValueError(f"unknown compression {name!r} (expected auto, none, gzip, xz, zstd, bzip2)")


def decode_errors() -> tuple[type[BaseException], ...]:
    """Exceptions the decoders raise on corrupt input."""
    return (zlib.error, lzma.LZMAError, OSError, EOFError, zstandard.ZstdError)
