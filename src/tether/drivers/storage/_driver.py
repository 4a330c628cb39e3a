from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from tether.driver import Driver, ServiceNotFound, export, export_stream
from tether.drivers.power import PowerInterface

from ._errors import StorageModeError
from ._interface import Compression, FlasherInterface, StorageMuxInterface
from ._sink import ImageSink, ImageSource

__all__ = ["MODES", "Flasher", "MockFlasher", "MockStorageMux", "StorageMuxBase"]

MODES = ("host", "dut", "off")


class StorageMuxBase(StorageMuxInterface, Driver):
    """A storage mux over a file or block device on the exporter host; how it switches is
    the subclass's (:class:`StorageMux`: commands, :class:`UsbSdMux`: the USB-SD-Mux,
    :class:`MockStorageMux`: nothing, a mode in memory).

    Subclasses override :meth:`switch` (and :meth:`query` when the hardware can say where it
    is). Writes and reads need ``host``; a switch is refused while a write or read is running.

    Config:
        path: the file or block device (e.g. ``/dev/sda``) the mux exposes to the host.
        sync: fsync after writing, before verifying and answering.
        initial: the mode at start.
    """

    path: str
    sync: bool = True
    initial: str = "off"

    _mode: str = "off"

    async def start(self) -> None:
        self._active: set[ImageSink | ImageSource] = set()
        if self.initial not in MODES:
            raise StorageModeError(
                f"{type(self).__name__}.initial must be one of {', '.join(MODES)} "
                f"(got {self.initial!r})"
            )
        self._mode = self.initial

    async def switch(self, mode: str) -> None:
        """Move the mux to ``mode``; hardware drivers override this and call super()."""
        self._mode = mode

    async def query(self) -> str:
        """Where the mux is; hardware drivers that can ask the device override this."""
        return self._mode

    async def _set(self, mode: str) -> None:
        if mode != self._mode and any(not stream.finished for stream in self._active):
            raise StorageModeError(
                f"cannot switch {self.path} to {mode}: a write or read is in progress"
            )
        await self.switch(mode)
        self.logger.info("storage mux: %s", mode)

    @export
    async def host(self) -> None:
        """Connect the storage to the exporter host."""
        await self._set("host")

    @export
    async def dut(self) -> None:
        """Connect the storage to the device under test."""
        await self._set("dut")

    @export
    async def off(self) -> None:
        """Disconnect the storage."""
        await self._set("off")

    @export
    async def status(self) -> str:
        """``"host"``, ``"dut"`` or ``"off"``."""
        self._mode = await self.query()
        return self._mode

    def _need_host(self, what: str) -> None:
        if self._mode != "host":
            raise StorageModeError(
                f"cannot {what} {self.path}: the storage mux is in {self._mode} mode; "
                "call host() first"
            )

    @export_stream
    @asynccontextmanager
    async def write(
        self,
        compression: Compression = "auto",
        sha256: str | None = None,
        verify: bool = False,
        trailer: bool = False,
    ) -> AsyncIterator[ImageSink]:
        """Write the image that comes in to the storage, from its first byte.

        Compressed images (gzip, xz, zstd, bzip2) are detected by their magic bytes and
        decoded. With ``trailer`` the client ends its data with the raw sha256 of what it
        sent, checked here. After the client's EOF: with ``sha256`` given, the sha256 of the
        written bytes must match it; with ``verify`` they are read back from the device and
        compared. Then one JSON line with the result is sent back.
        """
        self._need_host("write")
        sink = await ImageSink(
            self.path,
            compression=compression,
            expected_sha256=sha256,
            verify=verify,
            sync=self.sync,
            trailer=trailer,
        ).open()
        self._active.add(sink)
        try:
            yield sink
        finally:
            self._active.discard(sink)
            await sink.aclose()
        self.logger.info("wrote %d bytes to %s", sink.written, self.path)

    @export_stream
    @asynccontextmanager
    async def read(self, size: int | None = None) -> AsyncIterator[ImageSource]:
        """Send the storage's first ``size`` bytes (default: all of it)."""
        self._need_host("read")
        source = await ImageSource(self.path, size).open()
        self._active.add(source)
        try:
            yield source
        finally:
            self._active.discard(source)
            await source.aclose()


class MockStorageMux(StorageMuxBase):
    """A storage mux backed by a temporary file, removed when the driver stops.

    Config:
        path: a file to use instead of a temporary one (kept at stop).
        sync: fsync after writing (off by default: the file is scratch space).
        initial: the mode at start (``host``, so writes work at once).
    """

    path: str = ""
    sync: bool = False
    initial: str = "host"

    _own: bool = False

    async def start(self) -> None:
        if not self.path:
            fd, self.path = tempfile.mkstemp(prefix="tether-storage-", suffix=".img")
            os.close(fd)
            self._own = True
        await super().start()

    def stop(self) -> None:
        if self._own:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


class Flasher(FlasherInterface, Driver):
    """Flashes through a storage mux service; powers the DUT off first when it may.

    Routed services (exporter config ``uses:``): a :class:`StorageMuxInterface` (required)
    and a :class:`~tether.drivers.power.PowerInterface` (optional). A write powers the DUT
    off, switches the mux to ``host``, writes, and on success switches the mux to ``dut``
    (on failure to ``off``). ``power_on_after`` also powers the DUT on again.

    Config:
        power_on_after: power the DUT on after a successful write.
    """

    power_on_after: bool = False

    def _mux(self) -> Any:
        return self.incoming.connect(StorageMuxInterface)

    def _power(self) -> Any | None:
        try:
            return self.incoming.connect(PowerInterface)
        except ServiceNotFound:
            return None

    @export_stream
    @asynccontextmanager
    async def write(
        self,
        compression: Compression = "auto",
        sha256: str | None = None,
        verify: bool = False,
        trailer: bool = False,
    ) -> AsyncIterator[Any]:
        """Flash the image that comes in (see the class docstring); one JSON line back."""
        mux = self._mux()
        power = self._power()
        if power is not None:
            await power.off()
        await mux.host()

        async def after() -> None:  # before the answer goes out: the client sees the result
            await mux.dut()
            if power is not None and self.power_on_after:
                await power.on()

        try:
            async with await _opened(mux.write(compression, sha256, verify, trailer)) as sink:
                yield _AnswerAfter(sink, after)
        except BaseException:
            await mux.off()
            raise

    @export_stream
    @asynccontextmanager
    async def read(self, size: int | None = None) -> AsyncIterator[Any]:
        """Read the DUT's storage back (the DUT is powered off, the mux goes to ``host``)."""
        mux = self._mux()
        power = self._power()
        if power is not None:
            await power.off()
        await mux.host()
        reader: _AnswerAfter | None = None
        try:
            async with await _opened(mux.read(size)) as source:
                reader = _AnswerAfter(source, mux.dut)
                yield reader
        finally:
            # A read that ended early (the client went away) still gives the DUT its storage.
            await (reader.run_after() if reader is not None else mux.dut())


class MockFlasher(Flasher):
    """A flasher for tests and demos: writes through the routed storage mux when there is
    one, else through its own child ``storage`` (a :class:`MockStorageMux` on a temp file).

    Config: as :class:`Flasher`.
    """

    def __init__(self, **kwargs: Any) -> None:
        children = dict(kwargs.pop("children", None) or {})
        children.setdefault("storage", MockStorageMux())
        super().__init__(children=children, **kwargs)

    def _mux(self) -> Any:
        try:
            return self.incoming.connect(StorageMuxInterface)
        except ServiceNotFound:
            return self.children["storage"]


class _AnswerAfter:
    """Wraps a write sink or read source so ``after`` runs before the client sees the end.

    A write's answer, and a read's end of stream, are held back until ``after`` (switching
    the mux back to the DUT) is done, so a client that got its result sees the new state.
    """

    accepts_buffers = True

    def __init__(self, inner: Any, after: Callable[[], Awaitable[None]]) -> None:
        self._inner = inner
        self._after = after
        self._done: asyncio.Future[None] | None = None
        self._wrote = False

    async def run_after(self) -> None:
        """Run ``after`` unless it ran (or runs) already; wait for it."""
        if self._done is None:  # the first caller runs it; a concurrent one waits for it
            self._done = asyncio.ensure_future(self._after())
        await self._done

    async def send(self, data: bytes | memoryview) -> None:
        self._wrote = True
        await self._inner.send(data)

    async def send_eof(self) -> None:
        await self._inner.send_eof()
        if self._wrote:
            await self.run_after()

    async def receive(self) -> bytes:
        chunk: bytes = await self._inner.receive()
        if self._wrote:
            with contextlib.suppress(Exception):  # send_eof reports it
                await self.run_after()
        elif not chunk:
            await self.run_after()
        return chunk


async def _opened(value: Any) -> Any:
    """A service proxy returns an awaitable; a driver object the context manager itself."""
    return await value if inspect.isawaitable(value) else value
