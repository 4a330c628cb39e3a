"""One console, shared: every reader gets every byte, one writer at a time, and a log.

Theory of operation. A console driver (a serial port, QEMU's ttyS0) feeds what the device
prints into :meth:`ConsoleFanout.publish`, and gives it a function that sends bytes to the
device. Each stream a client opens (``connect``) is a :class:`ConsoleReader` with its own
queue: ``publish`` appends the chunk to every queue and to the session's
:class:`ConsoleLog`, then, while a reader holds more than ``reader_limit`` bytes, waits for it
(so a fast device is slowed to its slowest reader, through the stream's flow control, and no
reader loses a byte). A reader that does not drain for ``stall_timeout`` seconds (a paused
terminal) stops holding the others up: it loses what does not fit and is told how much, in
the stream, once it reads again. Streams open as writers by default; a second writer is
refused (:class:`ConsoleBusy`) while the first is open; ``read_only`` streams never write.

A driver whose device it must read itself (a serial port) hands the fan-out the device's
``receive`` with :meth:`ConsoleFanout.attach`: the fan-out then owns the one reader of the
device, a task that publishes what it reads whether or not any stream is open, so the log
holds what the board printed while nobody watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Awaitable, Callable
from typing import BinaryIO

from ._errors import ConsoleBusy, ConsoleReadOnly, DeviceDisconnected

__all__ = ["ConsoleFanout", "ConsoleLog", "ConsoleReader"]

_COALESCE = 1 << 20


class ConsoleLog:
    """Everything a console printed this session, in rotated files (removed at the end).

    Offsets count every byte ever logged; only the newest ``segments`` files of
    ``segment_bytes`` each are kept, so :meth:`read` may start later than asked.
    """

    def __init__(self, segment_bytes: int = 1 << 20, segments: int = 4) -> None:
        self.segment_bytes = max(1, segment_bytes)
        self.segments = max(1, segments)
        self.directory: str | None = None  # made with the first byte
        self.size = 0
        self._starts: deque[int] = deque([0])  # offset of each kept file's first byte
        self._first = 0  # number of the oldest kept file
        self._file: BinaryIO | None = None

    def _path(self, number: int) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, f"console.{number}.log")

    def append(self, data: bytes) -> None:
        """Log ``data`` (rotating when the current file is full)."""
        if self._file is None:
            self.directory = tempfile.mkdtemp(prefix="tether-console-log-")
            self._file = open(self._path(0), "ab")  # noqa: SIM115 (open for the session)
        view = memoryview(data)
        while view:
            room = self._starts[-1] + self.segment_bytes - self.size
            if room <= 0:
                self._rotate()
                continue
            piece = view[:room]
            assert self._file is not None
            self._file.write(piece)
            self.size += len(piece)
            view = view[len(piece) :]
        self._file.flush()

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        number = self._first + len(self._starts)
        self._starts.append(self.size)
        self._file = open(self._path(number), "ab")  # noqa: SIM115
        while len(self._starts) > self.segments:
            self._starts.popleft()
            with contextlib.suppress(OSError):
                os.unlink(self._path(self._first))
            self._first += 1

    @property
    def start(self) -> int:
        """The offset of the oldest byte still kept."""
        return self._starts[0]

    def read(self, since: int = 0, limit: int | None = None) -> bytes:
        """The kept bytes from offset ``since`` (or the oldest kept one), at most ``limit``."""
        since = max(since, self.start)
        if self.directory is None:
            return b""
        end = self.size if limit is None else min(self.size, since + limit)
        parts: list[bytes] = []
        for index, start in enumerate(self._starts):
            stop = self._starts[index + 1] if index + 1 < len(self._starts) else self.size
            if stop <= since or start >= end:
                continue
            with open(self._path(self._first + index), "rb") as file:
                file.seek(max(since, start) - start)
                parts.append(file.read(min(stop, end) - max(since, start)))
        return b"".join(parts)

    def close(self) -> None:
        """Remove the log files."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


class ConsoleReader:
    """One client's stream on a shared console (what ``connect`` yields)."""

    def __init__(self, fanout: ConsoleFanout, read_only: bool) -> None:
        self._fanout = fanout
        self.read_only = read_only
        self._chunks: deque[bytes] = deque()
        self.pending = 0
        self.dropped = 0
        self._told = 0
        self._ended = False
        self._error: BaseException | None = None
        self._ready = asyncio.Event()
        self.drained = asyncio.Event()
        self.drained.set()
        self.stalled = False

    def _push(self, data: bytes) -> None:
        if self._ended:
            return
        if self.stalled and self.pending >= self._fanout.reader_limit:
            self.dropped += len(data)
        else:
            self._chunks.append(data)
            self.pending += len(data)
            if self.pending >= self._fanout.reader_limit:
                self.drained.clear()
        self._ready.set()

    def _end(self, error: BaseException | None = None) -> None:
        if error is not None and not self._ended:
            self._error = error
        self._ended = True
        self._ready.set()
        self.drained.set()

    async def receive(self) -> bytes:
        while not self._chunks:
            if self._ended:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                return b""
            self._ready.clear()
            await self._ready.wait()
        parts = []
        size = 0
        if self.dropped > self._told:
            note = f"\r\n[tether: {self.dropped - self._told} bytes dropped: reader too slow]\r\n"
            parts.append(note.encode())
            self._told = self.dropped
        while self._chunks and size < _COALESCE:
            chunk = self._chunks.popleft()
            parts.append(chunk)
            size += len(chunk)
        self.pending -= size
        if self.pending < self._fanout.reader_limit:
            self.stalled = False
            self.drained.set()
        return b"".join(parts)

    async def send(self, data: bytes) -> None:
        if self.read_only:
            raise ConsoleReadOnly(f"{self._fanout.name}: this console stream is read-only")
        await self._fanout.write(data)

    async def send_eof(self) -> None:
        """The client is done: end our side too, so its close does not wait."""
        self._fanout.leave(self)
        self._end()

    async def aclose(self) -> None:
        self._fanout.leave(self)
        self._end()


class ConsoleFanout:
    """Shares one console among readers (see the module docstring).

    Args:
        name: the console, for messages.
        write: sends bytes to the device.
        reader_limit: bytes a reader may hold before ``publish`` waits for it.
        stall_timeout: seconds ``publish`` waits for one reader before it drops for it.
        log: where the output is kept (default: a fresh :class:`ConsoleLog`).
    """

    def __init__(
        self,
        name: str,
        write: Callable[[bytes], Awaitable[None]],
        *,
        reader_limit: int = 4 << 20,
        stall_timeout: float = 5.0,
        log: ConsoleLog | None = None,
    ) -> None:
        self.name = name
        self._write = write
        self.reader_limit = reader_limit
        self.stall_timeout = stall_timeout
        self.log = log if log is not None else ConsoleLog()
        self.readers: set[ConsoleReader] = set()
        self.writing: ConsoleReader | None = None
        self.on_empty: Callable[[], None] | None = None
        self._source: asyncio.Task[None] | None = None
        self._disconnected = False  # the attached device went away: its task closes it

    async def attach(
        self,
        receive: Callable[[], Awaitable[bytes]],
        gone: Callable[[DeviceDisconnected], Awaitable[None]],
    ) -> None:
        """Read the device with ``receive`` until it returns ``b""`` or raises
        :class:`DeviceDisconnected`, publishing every chunk, streams or none.

        On a disconnect every stream ends with the error, then ``gone(error)`` runs (to
        close the device). A device attached before is detached first; :meth:`detach` stops
        the reading.
        """
        await self.detach()
        self._disconnected = False
        self._source = asyncio.ensure_future(self._feed(receive, gone))

    async def _feed(
        self,
        receive: Callable[[], Awaitable[bytes]],
        gone: Callable[[DeviceDisconnected], Awaitable[None]],
    ) -> None:
        try:
            while data := await receive():
                await self.publish(data)
        except DeviceDisconnected as exc:
            self._disconnected = True
            self.end(exc)
            await gone(exc)

    async def detach(self) -> None:
        """Stop reading the attached device, if any, and wait until its reader is done (a
        device that went away: until ``gone`` has run)."""
        source, self._source = self._source, None
        if source is None:
            return
        if not self._disconnected:
            source.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await source

    def join(self, read_only: bool = False) -> ConsoleReader:
        """A new reader (and the writer, unless ``read_only``).

        Raises:
            ConsoleBusy: another writer is open.
        """
        if not read_only and self.writing is not None:
            raise ConsoleBusy(
                f"{self.name}: another client is writing to this console; open it read-only "
                "(dut NODE console --read-only) or close the other first"
            )
        reader = ConsoleReader(self, read_only)
        self.readers.add(reader)
        if not read_only:
            self.writing = reader
        return reader

    def leave(self, reader: ConsoleReader) -> None:
        """Forget ``reader`` (idempotent)."""
        if reader not in self.readers:
            return
        self.readers.discard(reader)
        if self.writing is reader:
            self.writing = None
        if not self.readers and self.on_empty is not None:
            self.on_empty()

    async def publish(self, data: bytes) -> None:
        """The device printed ``data``: log it, queue it for every reader, wait for laggards."""
        self.log.append(data)
        for reader in self.readers:
            reader._push(data)
        for reader in list(self.readers):
            if reader.drained.is_set():
                continue
            try:
                async with asyncio.timeout(self.stall_timeout):
                    await reader.drained.wait()
            except TimeoutError:
                reader.stalled = True

    def end(self, error: BaseException | None = None) -> None:
        """The device is gone: every reader's stream ends (with ``error`` once its queue is
        read)."""
        for reader in list(self.readers):
            reader._end(error)

    async def write(self, data: bytes) -> None:
        """Send bytes to the device."""
        await self._write(data)

    def close(self) -> None:
        """End every reader and remove the log."""
        self.end()
        self.log.close()
