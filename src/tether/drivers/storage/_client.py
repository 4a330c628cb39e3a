"""Storage clients: image writes from files or URLs, reads back, and the ``dut`` commands.

The client streams the image as it reads it (4 MiB chunks), hashing each chunk on a helper
thread while the same chunk is sent, and ends the stream with the sha256 (the exporter checks
it). The exporter's answer, one JSON line, becomes a :class:`WriteResult`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from tether.driver import DriverClient
from tether.errors import CallCancelled, DriverError

from ._errors import (
    ImageVerifyError,
    StorageError,
    StorageModeError,
    StorageSwitchError,
    StorageSwitchTimeout,
)
from ._interface import FlasherInterface, StorageMuxInterface, WriteResult
from ._source import open_image

__all__ = ["FlasherClient", "StorageMuxClient"]

_REMOTE_ERRORS: dict[str, type[StorageError]] = {
    "ImageVerifyError": ImageVerifyError,
    "StorageModeError": StorageModeError,
    "StorageError": StorageError,
    "StorageSwitchError": StorageSwitchError,
    "StorageSwitchTimeout": StorageSwitchTimeout,
}


@contextlib.contextmanager
def _storage_errors() -> Iterator[None]:
    """Re-raise the exporter's storage errors as the same local classes."""
    try:
        yield
    except DriverError as exc:
        module, _, name = exc.remote_type.rpartition(".")
        cls = _REMOTE_ERRORS.get(name) if module.startswith("tether.drivers.storage") else None
        if cls is None or isinstance(exc, cls):
            raise
        if issubclass(cls, StorageSwitchError):
            raise cls(exc.message, **exc.details) from exc
        raise cls(exc.message) from exc


def _progress(enabled: bool | None, description: str, total: int | None) -> Progress | None:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    progress.add_task(description, total=total)
    return progress


class _ImageClient(DriverClient):
    """``write`` an image (local file or URL) and ``read`` the storage back."""

    def write(
        self,
        image: str | os.PathLike[str],
        *,
        sha256: str | None = None,
        compression: str = "auto",
        verify: bool = False,
        progress: bool | None = None,
    ) -> WriteResult:
        """Write an image from a local file or an http(s) URL, over a byte stream.

        The bytes go as they are (a compressed image stays compressed on the wire and is
        decoded on the exporter). The client hashes what it sends and ends the stream with
        that sha256; the exporter compares it with the hash of what it received and wrote.

        Args:
            image: a path, or an ``http://`` / ``https://`` URL (fetched by this client).
            sha256: the expected sha256 of the image as written (decompressed), if known;
                the exporter checks it.
            compression: ``auto`` (by magic bytes), ``none``, ``gzip``, ``xz``, ``zstd``,
                ``bzip2``.
            verify: also have the exporter flush the storage and read it back from the device.
            progress: show a progress bar on stderr (default: when stderr is a terminal).

        Returns:
            bytes written, bytes sent, sha256, seconds and MB/s.

        Raises:
            ImageSourceError: the image cannot be read here.
            ImageVerifyError: a sha256 did not match (the message says which and where).
            StorageModeError, StorageError: the exporter refused or failed the write.
        """
        digest = hashlib.sha256()
        sent = 0
        start = time.perf_counter()
        with (
            open_image(image) as source,
            _storage_errors(),
            concurrent.futures.ThreadPoolExecutor(1, "tether-image-hash") as hasher,
        ):
            bar = _progress(progress, f"write {Path(source.name).name}", source.size)
            with (
                bar if bar is not None else contextlib.nullcontext(),
                self.stream("write", compression, sha256, verify, True) as stream,
            ):
                try:
                    for chunk in source.chunks:
                        # Hash on a thread while this one sends the same (read-only) chunk.
                        hashed = hasher.submit(digest.update, chunk)
                        stream.send(chunk)  # type: ignore[arg-type]  # any buffer goes
                        hashed.result()
                        sent += len(chunk)
                        if bar is not None:
                            bar.advance(bar.task_ids[0], len(chunk))
                    stream.send(digest.digest())
                except CallCancelled:
                    _read_all(stream)  # the exporter failed: raises its error
                    raise
                stream.send_eof()
                answer = _read_all(stream)
        seconds = time.perf_counter() - start
        reply = _parse_answer(answer)
        if reply["received"] != sent or reply["received_sha256"] != digest.hexdigest():
            raise ImageVerifyError(
                f"the exporter received {reply['received']} bytes with sha256 "
                f"{reply['received_sha256']}, but {sent} bytes with sha256 "
                f"{digest.hexdigest()} were sent from {source.name}"
            )
        written = int(reply["bytes"])
        return WriteResult(
            bytes=written,
            sent=sent,
            compression=str(reply["compression"]),
            sha256=str(reply["sha256"]),
            verified=bool(reply["verified"]),
            seconds=seconds,
            mb_s=written / seconds / 1e6 if seconds > 0 else 0.0,
            target=str(reply["target"]),
        )

    def cli(self) -> click.Group:
        """``dut <node> write IMAGE`` and ``dut <node> read FILE``."""
        return _image_cli(self)

    def write_local_file(self, path: str | os.PathLike[str]) -> WriteResult:
        """``write(path)`` (the name Jumpstarter's storage clients use)."""
        return self.write(path)

    def read(
        self, path: str | os.PathLike[str], *, size: int | None = None, progress: bool | None = None
    ) -> int:
        """Read the storage's first ``size`` bytes (default: all) into a local file.

        Returns:
            The number of bytes written to ``path``.
        """
        count = 0
        with _storage_errors(), open(path, "wb") as out:
            bar = _progress(progress, f"read {self.name}", size)
            with (
                bar if bar is not None else contextlib.nullcontext(),
                self.stream("read", size) as stream,
            ):
                while chunk := stream.receive():
                    out.write(chunk)
                    count += len(chunk)
                    if bar is not None:
                        bar.advance(bar.task_ids[0], len(chunk))
        return count


def _image_cli(client: _ImageClient) -> click.Group:
    group = click.Group(name=client.name)

    @group.command()
    @click.argument("image")
    @click.option("--sha256", help="Expected sha256 of the image as written (decompressed).")
    @click.option(
        "--compression",
        type=click.Choice(["auto", "none", "gzip", "xz", "zstd", "bzip2"]),
        default="auto",
        show_default=True,
    )
    @click.option("--verify", is_flag=True, help="Read the storage back from the device.")
    @click.option("--progress/--no-progress", default=None, help="Default: when a terminal.")
    def write(
        image: str, sha256: str | None, compression: str, verify: bool, progress: bool | None
    ) -> None:
        """Write IMAGE (a local file or an http(s) URL) to the storage."""
        try:
            result = client.write(
                image, sha256=sha256, compression=compression, verify=verify, progress=progress
            )
        except StorageError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(
            f"wrote {result.bytes} bytes ({result.compression}, sha256 {result.sha256}) to "
            f"{result.target} in {result.seconds:.2f} s: {result.mb_s:.1f} MB/s"
        )

    @group.command()
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--size", type=int, help="Bytes to read (default: all).")
    @click.option("--progress/--no-progress", default=None, help="Default: when a terminal.")
    def read(file: str, size: int | None, progress: bool | None) -> None:
        """Read the storage back into FILE."""
        try:
            count = client.read(file, size=size, progress=progress)
        except StorageError as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(f"read {count} bytes into {file}")

    return group


def _read_all(stream: Any) -> bytes:
    parts = []
    while chunk := stream.receive():
        parts.append(chunk)
    return b"".join(parts)


def _parse_answer(answer: bytes) -> dict[str, Any]:
    try:
        reply = json.loads(answer)
    except ValueError as exc:
        raise StorageError(f"unreadable answer from the exporter: {answer[:200]!r}") from exc
    if not isinstance(reply, dict) or "received_sha256" not in reply:
        raise StorageError(f"unexpected answer from the exporter: {answer[:200]!r}")
    return reply


class StorageMuxClient(_ImageClient):
    """Client of :class:`StorageMuxInterface`: ``host``, ``dut``, ``off``, ``status``,
    ``write`` and ``read``."""

    interface = StorageMuxInterface

    def host(self) -> None:
        """Connect the storage to the exporter host."""
        with _storage_errors():
            self.call("host")

    def dut(self) -> None:
        """Connect the storage to the device under test."""
        with _storage_errors():
            self.call("dut")

    def off(self) -> None:
        """Disconnect the storage."""
        with _storage_errors():
            self.call("off")

    def status(self) -> str:
        """``"host"``, ``"dut"`` or ``"off"``."""
        with _storage_errors():
            return str(self.call("status"))


class FlasherClient(_ImageClient):
    """Client of :class:`FlasherInterface`: ``write`` (flash) and ``read``."""

    interface = FlasherInterface

    def flash(self, image: str | os.PathLike[str], **kwargs: Any) -> WriteResult:
        """Same as :meth:`write`."""
        return self.write(image, **kwargs)
