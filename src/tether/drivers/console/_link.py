"""One open stream to a console node, shared by every driver of a session that uses it.

Theory of operation. The console shell, U-Boot and the boot strategy of one board all talk
to the same console, and must not lose output between their calls (U-Boot's autoboot line
comes once, right after power-on). So the first of them to need the console opens one
read-only stream (:meth:`ConsoleLink.open`); a reader task copies what arrives to the
operation that holds the link (:meth:`ConsoleLink.operation`, one at a time) and into a tail
of the last lines, for error messages. What arrives while no operation holds the link is
kept (up to ``_BETWEEN`` bytes) and goes to the next operation first: the autoboot line
printed between the strategy's power-on and U-Boot's ``interrupt`` is not lost.

An operation is the console's writer while it runs (a second stream, only sent on; its copy
of the output is dropped): between operations a person may type on the console (``dut NODE
console``), and an operation while they do is a clear error (``ConsoleBusy``). The stream
closes when the last driver using it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from typing import Any

from tether.driver import ServiceDirectory
from tether.drivers.serial import SerialInterface

from ._machine import ConsoleTail

__all__ = ["ConsoleClosedError", "ConsoleLink", "ConsoleOperation"]

_BETWEEN = 1 << 18
_links: dict[int, ConsoleLink] = {}


class ConsoleClosedError(ConnectionError):
    """The console stream ended (the device or its port went away)."""


class ConsoleOperation:
    """What one operation sees of the console: the bytes from the moment it began."""

    def __init__(self, link: ConsoleLink, queue: asyncio.Queue[bytes | None]) -> None:
        self.link = link
        self._queue = queue

    async def receive(self, timeout: float | None) -> bytes:  # noqa: ASYNC109 (the timeout is part of the API)
        """The next bytes; ``b""`` when nothing came within ``timeout`` seconds.

        Raises:
            ConsoleClosedError: the console stream ended.
        """
        try:
            data = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return b""
        if data is None:
            self._queue.put_nowait(None)
            raise ConsoleClosedError(f"the console stream ended ({self.link.name})")
        return data

    async def send(self, data: bytes) -> None:
        """Send bytes to the device."""
        await self.link.send(data)


class ConsoleLink:
    """The shared stream to one console service (see the module docstring).

    Get it with :meth:`acquire` in a driver's ``start`` and give it back with
    :meth:`release` in ``prepare_stop``.
    """

    def __init__(self, service: Any, name: str) -> None:
        self.name = name
        self.users = 0
        self.tail = ConsoleTail(16384)
        self._service = service
        self._context: Any = None
        self._stream: Any = None
        self._writer: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._queues: list[asyncio.Queue[bytes | None]] = []
        self._between = bytearray()
        #: Bumped at each new stream and each power-on (:meth:`forget`): a shell found
        #: ready before must be found again.
        self.epoch = 0
        self._opening = asyncio.Lock()
        self._busy = asyncio.Lock()
        self.closed_reason: str | None = None

    @classmethod
    def acquire(cls, incoming: ServiceDirectory, instance: str = "default") -> ConsoleLink:
        """The link to the console service routed to this driver (``uses: {console: ...}``).

        Raises:
            ServiceNotFound: no console is routed to the driver.
        """
        impl = incoming.get(SerialInterface, instance)
        link = _links.get(id(impl))
        if link is None:
            service = incoming.connect(SerialInterface, instance)
            link = _links[id(impl)] = cls(service, type(impl).__name__)
            link._key = id(impl)
        link.users += 1
        return link

    _key: int = 0

    async def release(self) -> None:
        """Give the link back; the last user closes the stream."""
        self.users -= 1
        if self.users > 0:
            return
        _links.pop(self._key, None)
        await self.close()

    @property
    def is_open(self) -> bool:
        return self._reader is not None and not self._reader.done()

    async def open(self) -> None:
        """Open the stream unless it is open (idempotent; reopens after the stream ended)."""
        async with self._opening:
            if self.is_open:
                return
            await self._close_stream()
            context = await _opened(self._service.connect(read_only=True))
            self._stream = await context.__aenter__()
            self._context = context
            self.closed_reason = None
            self.epoch += 1
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def open_soon(self, logger: logging.Logger | None = None) -> None:
        """Open the stream now if it can be; a failure is logged and the next operation
        tries again (a driver's ``start`` must not fail because a port is busy)."""
        try:
            await self.open()
        except Exception as exc:
            if logger is not None:
                logger.warning("console not open yet (%s: %s)", type(exc).__name__, exc)

    async def close(self) -> None:
        """Close the stream (the next :meth:`open` opens a new one)."""
        async with self._opening:
            await self._close_stream()

    async def _close_stream(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(BaseException):
                await reader
        context, self._context, self._stream = self._context, None, None
        if context is not None:
            with contextlib.suppress(Exception):
                await context.__aexit__(None, None, None)

    async def _read(self) -> None:
        stream = self._stream
        try:
            while data := await stream.receive():
                self.tail.receive_data(data)
                if not self._queues:
                    self._between += data
                    del self._between[: max(0, len(self._between) - _BETWEEN)]
                for queue in self._queues:
                    queue.put_nowait(data)
            self.closed_reason = "end of stream"
        except Exception as exc:
            self.closed_reason = f"{type(exc).__name__}: {exc}"
        for queue in self._queues:
            queue.put_nowait(None)

    async def send(self, data: bytes) -> None:
        """Send bytes to the device (inside an :meth:`operation`, its writer)."""
        if self._writer is None:
            raise RuntimeError(f"{self.name}: send outside an operation")
        await self._writer.send(data)

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """Be the console's writer: a stream only sent on, its copy of the output dropped."""
        context = await _opened(self._service.connect(read_only=False))
        writer = await context.__aenter__()

        async def drain() -> None:
            with contextlib.suppress(Exception):
                while await writer.receive():
                    pass

        drainer = asyncio.get_running_loop().create_task(drain())
        self._writer = writer
        try:
            yield
        finally:
            self._writer = None
            drainer.cancel()
            with contextlib.suppress(BaseException):
                await drainer
            with contextlib.suppress(Exception):
                await context.__aexit__(None, None, None)

    @contextlib.asynccontextmanager
    async def operation(self) -> AsyncIterator[ConsoleOperation]:
        """Hold the console for one operation (others wait); it sees output from now on,
        and what came since the last operation.

        Raises:
            ConsoleBusy: someone else writes to the console (an interactive session).
        """
        async with self._busy, self._writing():
            await self.open()
            # Unbounded: the operation reads as fast as the loop runs, and a command's
            # output is bounded by the machine's max_output; nothing may be dropped.
            queue: asyncio.Queue[bytes | None] = asyncio.Queue()
            if self._between:
                queue.put_nowait(bytes(self._between))
                self._between.clear()
            self._queues.append(queue)
            try:
                yield ConsoleOperation(self, queue)
            finally:
                self._queues.remove(queue)

    def forget(self) -> None:
        """Drop what arrived between operations (before a power-on: the last boot's output
        must not answer the next operation)."""
        self._between.clear()
        self.epoch += 1

    def last_lines(self, count: int = 10) -> str:
        """The console's last ``count`` lines, for error messages."""
        lines = self.tail.last_lines(count)
        return "\n".join(f"  | {line}" for line in lines) if lines else "  (no console output)"


async def _opened(value: Any) -> Any:
    """A service proxy returns an awaitable; a driver object the context manager itself."""
    return await value if inspect.isawaitable(value) else value
