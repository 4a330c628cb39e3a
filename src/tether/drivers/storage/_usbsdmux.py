"""``UsbSdMux``: the Linux Automation USB-SD-Mux (classic and FAST), through the ``usbsdmux``
library (the ``usbsdmux`` extra).

The library talks to the mux's USB2642 card reader with SG_IO ioctls on its ``/dev/sg*`` node
and sleeps between steps, so every call runs on this driver's own worker thread. The device
object is made on first use; a failure drops it so the next call opens the node again (the mux
may have been replugged).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from tether.extras import import_extra, requires_extra

from ._command import wait_for_device
from ._driver import MODES, StorageMuxBase
from ._errors import StorageSwitchError, StorageSwitchTimeout

__all__ = ["UsbSdMux"]

T = TypeVar("T")

_CLASSES = {"classic": "UsbSdMuxClassic", "fast": "UsbSdMuxFast"}


@requires_extra("usbsdmux")
class UsbSdMux(StorageMuxBase):
    """A USB-SD-Mux: the SD card goes to the exporter host (``path``) or to the DUT.

    Config:
        sg: the mux's SCSI generic node, best its stable udev name
            (``/dev/usb-sd-mux/id-000000000367``; or ``/dev/sg1``).
        path: the card's block device on the host
            (``/dev/disk/by-id/usb-LinuxAut_sdmux_HS-SD_MMC_000000000367-0:0``).
        model: ``auto`` (read from sysfs, as the ``usbsdmux`` tool does), ``classic`` or
            ``fast``.
        wait_for_path: after ``host``, wait for ``path`` to appear (within ``timeout``).
        timeout: seconds one switch (and the wait for ``path``) may take.
        initial: the mode at start; empty: read it from the mux.
    """

    sg: str
    model: Literal["auto", "classic", "fast"] = "auto"
    wait_for_path: bool = True
    timeout: float = 10.0
    initial: str = ""

    _device: Any = None
    _worker: concurrent.futures.ThreadPoolExecutor | None = None

    def _name(self) -> str:
        return f"USB-SD-Mux {self.sg}"

    # -- on the worker thread ---------------------------------------------------------------

    def _open(self) -> Any:
        """The library's device object for ``sg`` (tests replace this with a fake)."""
        library = import_extra("usbsdmux", "usbsdmux.usbsdmux", "tether.drivers.storage.UsbSdMux")
        if self.model == "auto":
            return library.autoselect_driver(self.sg)
        return getattr(library, _CLASSES[self.model])(self.sg)

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        try:
            if self._device is None:
                self._device = self._open()
            return fn(self._device)
        except FileNotFoundError as exc:
            self._device = None
            raise StorageSwitchError(
                f"{self._name()}: {what}: no such device ({exc.filename or self.sg}); "
                "is the mux plugged in?"
            ) from None
        except PermissionError:
            self._device = None
            raise StorageSwitchError(
                f"{self._name()}: {what}: permission denied (the exporter's user needs "
                "read-write access to the node, e.g. a udev rule)"
            ) from None
        except Exception as exc:  # the library's own errors (ioctl, I2C, unknown revision)
            self._device = None
            raise StorageSwitchError(
                f"{self._name()}: {what} failed: {type(exc).__name__}: {exc}"
            ) from None

    async def _run(self, what: str, fn: Callable[[Any], T]) -> T:
        if self._worker is None:
            self._worker = concurrent.futures.ThreadPoolExecutor(1, "tether-usbsdmux")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                return await loop.run_in_executor(self._worker, self._call, what, fn)
        except TimeoutError:
            raise StorageSwitchTimeout(
                f"{self._name()}: {what} took longer than {self.timeout} s"
            ) from None

    # -- StorageMuxBase -------------------------------------------------------------------

    async def start(self) -> None:
        wanted = self.initial
        self.initial = wanted or "off"
        await super().start()
        if wanted:
            await self.switch(wanted)
        else:
            self._mode = await self.query()

    async def switch(self, mode: str) -> None:
        """Switch the card (``mode_host`` / ``mode_DUT`` / ``mode_disconnect``)."""
        if mode == "host":
            await self._run("switch to host", lambda mux: mux.mode_host())
        elif mode == "dut":
            await self._run("switch to dut", lambda mux: mux.mode_DUT())
        else:
            await self._run("switch off", lambda mux: mux.mode_disconnect())
        await super().switch(mode)
        if mode == "host" and self.wait_for_path:
            await self._wait_for_path()

    async def _wait_for_path(self) -> None:
        await wait_for_device(self.path, self.timeout, self._name())

    async def query(self) -> str:
        """The mode the mux reports (``get_mode``)."""
        mode = await self._run("read the mode", lambda mux: mux.get_mode())
        if mode not in MODES:
            raise StorageSwitchError(f"{self._name()}: the mux reported mode {mode!r}")
        return str(mode)

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)
            self._worker = None
