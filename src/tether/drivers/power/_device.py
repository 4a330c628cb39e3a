"""``DevicePower``: what every networked power switch shares (PDU outlet, relay coil, BMC).

A subclass says how to switch (``_switch``) and how to ask (``_query``) and maps its library's
exceptions to :mod:`._errors` in one place. This base bounds each request by the configured
``timeout`` (``asyncio.timeout``: virtual time under the test kit), names the device in every
error and log line, and leaves ``cycle`` to :class:`PowerInterface` (the wait runs on the
exporter).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

from tether.driver import Driver, export

from ._errors import PowerDeviceError, PowerDeviceTimeout
from ._interface import PowerInterface, PowerReading

__all__ = ["DevicePower"]

T = TypeVar("T")


class DevicePower(PowerInterface, Driver):
    """Base of the networked power drivers; not registered as a driver itself.

    Config:
        timeout: seconds one request (switch or status) may take in all, retries included.
    """

    timeout: float = 5.0

    def device(self) -> str:
        """The device as errors and logs name it (no secrets): ``snmp://host:port outlet 3``."""
        raise NotImplementedError

    def timeout_hint(self) -> str:
        """Added to a timeout's message: what else no answer may mean (never a secret)."""
        return ""

    async def _switch(self, on: bool) -> None:
        raise NotImplementedError

    async def _query(self) -> bool:
        raise NotImplementedError

    def _log(self, what: str) -> None:
        logger = self.logger
        if logger.isEnabledFor(logging.INFO):  # device() builds a string: only when it shows
            logger.info("%s: %s", self.device(), what)

    async def _bounded(self, what: str, request: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self.timeout):
                return await request
        except PowerDeviceError:
            raise
        except TimeoutError:
            raise PowerDeviceTimeout(
                f"{self.device()}: no answer to {what} within {self.timeout} s{self.timeout_hint()}"
            ) from None

    @export
    async def on(self) -> None:
        """Switch power on."""
        await self._bounded("power on", self._switch(True))
        self._log("power on")

    @export
    async def off(self) -> None:
        """Switch power off."""
        await self._bounded("power off", self._switch(False))
        self._log("power off")

    @export
    async def status(self) -> bool:
        """True when power is on, as the device reports it."""
        return await self._bounded("power status", self._query())

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        """Not supported: these devices switch, they do not measure here."""
        raise NotImplementedError(f"{self.device()}: this driver cannot measure power")
        yield  # pragma: no cover  (makes this an async generator)
