"""``PySerial``: any pyserial URL as a byte stream.

Theory of operation: the port is opened when the session starts and held until it ends;
the console's fan-out owns its one reader (:meth:`ConsoleFanout.attach`), so the session's
log keeps what the board prints while no stream is open. A port that cannot be opened at the
start (a USB adapter not plugged in yet) does not fail the session: each ``connect`` tries
again, and a device that went away and came back is opened again the same way. pyserial's
``open`` configures the line and, for device paths, flushes input that arrived while the port
was closed (URL handlers' flush is disabled: it would eat a greeting sent as the connection
opens). From the moment ``connect`` returns, every byte the device sends reaches the client,
the first one included.

Ports with a file descriptor (``/dev/tty*``, ptys) are read and written with the event loop's
reader/writer callbacks: no thread, no polling. Other URLs (``rfc2217://``, ``socket://``,
``loop://``) go through pyserial's blocking calls on a worker thread with a short read timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import serial

from tether.driver import Driver, export, export_stream

from ._errors import DeviceDisconnected
from ._fanout import ConsoleFanout, ConsoleReader
from ._interface import SerialInterface, SerialSettings, StopBits

__all__ = ["PySerial"]

_CHUNK = 1 << 16
_THREAD_READ_TIMEOUT = 0.05


def _fileno(port: Any) -> int | None:
    if type(port).__module__ != "serial.serialposix":
        return None  # URL handlers may have a socket fd, but they frame the data themselves
    try:
        return int(port.fileno())
    except (AttributeError, OSError, serial.SerialException):
        return None


class FdStream:
    """A port with a file descriptor, driven by the event loop's fd callbacks."""

    def __init__(self, port: serial.SerialBase, fd: int, url: str) -> None:
        self._port = port
        self._fd = fd
        self._url = url
        self._loop = asyncio.get_running_loop()
        self._ended = False
        self._reading: asyncio.Future[None] | None = None
        self.closed = asyncio.Event()
        # pyserial leaves VMIN at 0 (it times reads with select), where a read with no data
        # returns b"" like a hang-up would; VMIN 1 makes it EAGAIN, so b"" means gone.
        with contextlib.suppress(termios.error):
            attrs = termios.tcgetattr(fd)
            attrs[6][termios.VMIN] = 1
            attrs[6][termios.VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, attrs)

    def _gone(self, exc: OSError | None) -> DeviceDisconnected:
        why = exc.strerror if exc is not None and exc.strerror else "the line hung up"
        return DeviceDisconnected(f"serial port {self._url}: the device went away ({why})")

    async def receive(self) -> bytes:
        woke = False
        while not self._ended:
            try:
                data = os.read(self._fd, _CHUNK)
            except BlockingIOError:
                data = b""
            except OSError as exc:
                raise self._gone(exc) from exc
            if data:
                return data
            if woke:  # readable, yet nothing to read: the line hung up
                raise self._gone(None)
            await self._wait(self._loop.add_reader, self._loop.remove_reader, reading=True)
            woke = True
        return b""

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._fd, view)
            except BlockingIOError:
                await self._wait(self._loop.add_writer, self._loop.remove_writer, reading=False)
                continue
            except OSError as exc:
                raise self._gone(exc) from exc
            view = view[written:]

    @property
    def ending(self) -> bool:
        """True once the client ended its side (or the stream is closing)."""
        return self._ended

    async def send_eof(self) -> None:
        """The client is done: end the receiving side too (a port has no half-close)."""
        self._ended = True
        if self._reading is not None and not self._reading.done():
            self._reading.set_result(None)

    async def _wait(self, add: Any, remove: Any, *, reading: bool) -> None:
        future: asyncio.Future[None] = self._loop.create_future()

        def ready() -> None:
            if not future.done():
                future.set_result(None)

        if reading:
            self._reading = future
        add(self._fd, ready)
        try:
            await future
        finally:
            remove(self._fd)
            if reading:
                self._reading = None

    async def aclose(self) -> None:
        self._ended = True
        self._port.close()


class ThreadStream:
    """Any pyserial port: blocking reads and writes on a worker thread."""

    def __init__(self, port: serial.SerialBase, url: str) -> None:
        self._port: Any = port  # URL handlers add in_waiting and friends
        self._url = url
        self._ended = False
        self._inflight: asyncio.Future[bytes] | None = None
        self.closed = asyncio.Event()

    def _read(self) -> bytes:
        while not self._ended:
            try:
                data = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                raise DeviceDisconnected(
                    f"serial port {self._url}: the device went away ({exc})"
                ) from exc
            if data:
                return bytes(data)
        return b""

    def _write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            raise DeviceDisconnected(
                f"serial port {self._url}: the device went away ({exc})"
            ) from exc

    async def receive(self) -> bytes:
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().run_in_executor(None, self._read)
        try:
            # Shielded: a cancelled receive leaves the read running; the next one picks it up.
            return await asyncio.shield(self._inflight)
        finally:
            if self._inflight.done():
                self._inflight = None

    async def send(self, data: bytes) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._write, data)

    @property
    def ending(self) -> bool:
        """True once the client ended its side (or the stream is closing)."""
        return self._ended

    async def send_eof(self) -> None:
        self._ended = True

    async def aclose(self) -> None:
        self._ended = True
        if self._inflight is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait([self._inflight])
        self._port.close()


class PySerial(SerialInterface, Driver):
    """A serial port on the exporter host, opened with pyserial.

    Config:
        url: a device path (``/dev/ttyUSB0``) or a pyserial URL (``rfc2217://host:port``,
            ``socket://host:port``, ``loop://``).
        baudrate: line speed.
        bytesize: data bits (5 to 8).
        parity: ``N``, ``E``, ``O``, ``M`` or ``S``.
        stopbits: 1, 1.5 or 2.
        xonxoff: software flow control.
        rtscts: RTS/CTS hardware flow control.
        dsrdtr: DSR/DTR hardware flow control.
    """

    url: str
    baudrate: int = 115200
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    stopbits: StopBits = 1
    xonxoff: bool = False
    rtscts: bool = False
    dsrdtr: bool = False

    _device: FdStream | ThreadStream | None = None

    async def start(self) -> None:
        self.fanout = ConsoleFanout(self.node.path or self.url, self._write_device)
        self._opening = asyncio.Lock()
        try:
            await self._open_device()
        except DeviceDisconnected as exc:
            self.logger.warning("%s; the next connect tries again", exc)

    async def prepare_stop(self) -> None:
        # Close the port before the session's loop goes, or the port and its reader thread
        # stay behind.
        await self._close_device()

    def stop(self) -> None:
        fanout = getattr(self, "fanout", None)
        if fanout is not None:
            fanout.close()

    def _open(self) -> serial.SerialBase:
        try:
            port = serial.serial_for_url(
                self.url, **self._line_settings(), timeout=_THREAD_READ_TIMEOUT, do_not_open=True
            )
            if type(port).__module__ != "serial.serialposix":
                # URL handlers flush input in open(): that would eat a greeting the far end
                # sends as soon as the connection is up (ser2net banners, prompts).
                port.reset_input_buffer = lambda: None  # type: ignore[method-assign]
            port.open()
            return port
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceDisconnected(f"serial port {self.url}: cannot open: {exc}") from exc

    async def _open_device(self) -> None:
        """Open the port unless it is open, and attach it to the fan-out.

        Raises:
            DeviceDisconnected: the port cannot be opened.
        """
        async with self._opening:
            if self._device is not None:
                return
            # rfc2217:// negotiates over the network while opening: keep that off the loop.
            port = await asyncio.get_running_loop().run_in_executor(None, self._open)
            self.logger.info("opened %s at %d baud", self.url, self.baudrate)
            fileno = _fileno(port)
            device = (
                FdStream(port, fileno, self.url)
                if fileno is not None
                else ThreadStream(port, self.url)
            )
            self._device = device
            await self.fanout.attach(device.receive, self._device_gone)

    async def _device_gone(self, exc: DeviceDisconnected) -> None:
        self.logger.warning("%s", exc)
        device, self._device = self._device, None
        if device is not None:
            with contextlib.suppress(Exception):
                await device.aclose()
            device.closed.set()

    async def _close_device(self) -> None:
        fanout = getattr(self, "fanout", None)
        if fanout is None:
            return
        await fanout.detach()
        device, self._device = self._device, None
        if device is not None:
            await device.aclose()
            device.closed.set()
            self.logger.info("closed %s", self.url)

    async def _write_device(self, data: bytes) -> None:
        device = self._device
        if device is None:
            raise DeviceDisconnected(f"serial port {self.url} is not open")
        await device.send(data)

    @export_stream
    @asynccontextmanager
    async def connect(self, read_only: bool = False) -> AsyncIterator[ConsoleReader]:
        """A byte stream of what the device sends and receives.

        Any number of streams at once, each getting every byte from the moment it opens;
        one of them may write (a second writer is refused): open the others ``read_only``.
        The port stays open for the session, streams or none (the log keeps what it
        prints); a port that is not open (missing at the start, or gone since) is opened.
        """
        reader = self.fanout.join(read_only)
        try:
            await self._open_device()
        except BaseException:
            self.fanout.leave(reader)
            raise
        try:
            yield reader
        finally:
            await reader.aclose()

    @export
    async def log(self, since: int = 0, limit: int | None = None) -> bytes:
        """What the console printed this session, from byte offset ``since`` (the oldest kept
        byte if that is gone), at most ``limit`` bytes."""
        return self.fanout.log.read(since, limit)

    @export
    async def log_size(self) -> int:
        """Bytes the console printed this session (the offset the next byte will have)."""
        return self.fanout.log.size

    @export
    async def settings(self) -> SerialSettings:
        """The port's configured line settings."""
        return SerialSettings(url=self.url, **self._line_settings())

    def _line_settings(self) -> dict[str, Any]:
        """The line settings, as both pyserial and :class:`SerialSettings` name them."""
        return {
            "baudrate": self.baudrate,
            "bytesize": self.bytesize,
            "parity": self.parity,
            "stopbits": self.stopbits,
            "xonxoff": self.xonxoff,
            "rtscts": self.rtscts,
            "dsrdtr": self.dsrdtr,
        }
