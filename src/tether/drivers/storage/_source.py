"""Client-side image sources: a local file or an http(s) URL, read in large chunks."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from ._errors import ImageSourceError

__all__ = ["ImageInput", "open_image"]

CHUNK = 4 << 20


@dataclass
class ImageInput:
    """An opened image: its chunks, its size when known, and a name for messages."""

    name: str
    size: int | None
    chunks: Iterator[bytes | memoryview]


def _is_url(image: str) -> bool:
    return image.startswith(("http://", "https://"))


@contextlib.contextmanager
def open_image(image: str | os.PathLike[str], *, timeout: float = 60.0) -> Iterator[ImageInput]:
    """Open a local file or an http(s) URL for reading.

    Raises:
        ImageSourceError: the file cannot be read, or the server answered with an error.
    """
    text = os.fspath(image)
    if _is_url(text):
        with _open_url(text, timeout) as opened:
            yield opened
        return
    path = Path(text).expanduser()
    try:
        handle = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ImageSourceError(f"cannot open image {path}: {exc.strerror or exc}") from exc
    with handle:
        size = os.fstat(handle.fileno()).st_size
        yield ImageInput(str(path), size, _file_chunks(handle, path))


def _file_chunks(handle: object, path: Path) -> Iterator[bytes | memoryview]:
    # Two buffers, alternating: a chunk stays valid while the caller hashes and sends it.
    buffers = [bytearray(CHUNK), bytearray(CHUNK)]
    index = 0
    readinto = handle.readinto  # type: ignore[attr-defined]
    while True:
        buf = buffers[index]
        try:
            count = readinto(buf)
        except OSError as exc:
            raise ImageSourceError(f"reading image {path}: {exc.strerror or exc}") from exc
        if not count:
            return
        yield memoryview(buf)[:count]
        index ^= 1


@contextlib.contextmanager
def _open_url(url: str, timeout: float) -> Iterator[ImageInput]:
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
            if response.status_code >= 400:
                raise ImageSourceError(
                    f"GET {url}: HTTP {response.status_code} {response.reason_phrase}"
                )
            length = response.headers.get("content-length")
            encoded = response.headers.get("content-encoding", "identity") != "identity"
            size = int(length) if length and length.isdigit() and not encoded else None
            yield ImageInput(url, size, _url_chunks(response, url))
    except httpx.HTTPError as exc:
        raise ImageSourceError(f"GET {url}: {exc}") from exc


def _url_chunks(response: httpx.Response, url: str) -> Iterator[bytes]:
    try:
        yield from response.iter_bytes(CHUNK)
    except httpx.HTTPError as exc:
        raise ImageSourceError(f"GET {url}: {exc}") from exc
