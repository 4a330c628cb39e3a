"""Drivers for the exporter and client tests (importable by exporter subprocesses: put this
directory on PYTHONPATH).

``Marker`` reports its lifecycle to a test by connecting to a unix socket the test listens on
(``notify``), so tests wait on ``accept()`` instead of polling for files.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from tether import Driver, export, export_stream


def notify(path: str, message: str) -> None:
    """Send one line to the test listening at ``path`` (ignored when nobody listens)."""
    if not path:
        return
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(path)
            sock.sendall(message.encode() + b"\n")
    except OSError:
        pass


class Marker(Driver):
    """Counts calls; tells ``notify`` when it starts, hangs and stops."""

    notify: str = ""
    tag: str = "marker"

    _count: int = 0

    async def start(self) -> None:
        notify(self.notify, f"{self.tag} started")

    def stop(self) -> None:
        notify(self.notify, f"{self.tag} stopped")

    @export
    async def increment(self) -> int:
        """Add one to this tree's counter and return it."""
        self._count += 1
        return self._count

    @export
    async def hang(self) -> None:
        """Never return (after telling the test the call arrived)."""
        await asyncio.to_thread(notify, self.notify, f"{self.tag} hanging")
        await asyncio.Event().wait()

    @export
    async def crash(self) -> None:
        """Raise, as a buggy driver would."""
        raise RuntimeError("the relay board caught fire")


class _Sink:
    accepts_buffers = True

    def __init__(self) -> None:
        self.received = 0
        self._eof = asyncio.Event()

    async def send(self, data: bytes) -> None:
        self.received += len(data)

    async def send_eof(self) -> None:
        self._eof.set()

    async def receive(self) -> bytes:
        await self._eof.wait()
        return b""


class Sink(Driver):
    """A byte stream that discards what it gets; ``total()`` says how much it got."""

    _total: int = 0

    @export_stream
    @asynccontextmanager
    async def sink(self) -> AsyncIterator[_Sink]:
        """Discard bytes until EOF."""
        stream = _Sink()
        try:
            yield stream
        finally:
            self._total += stream.received

    @export
    async def total(self) -> int:
        """Bytes received by every closed stream."""
        return self._total
