"""``IpmiPower``: a server's chassis power through its BMC, over IPMI 2.0 LAN (RMCP+, pyghmi).

pyghmi is a blocking library with a process-wide I/O thread; every call here runs on one
worker thread of this driver's own, so requests to one BMC are serialised and the exporter's
loop never blocks. The session (pyghmi's ``Command``, which logs in when made) is opened on
first use and dropped after a failure, so the next request logs in again; pyghmi itself shares
one RMCP+ session per BMC and user within the process and keeps it alive, so sessions (and
leases) that follow each other do not log in each time. pyghmi is imported
only on that thread, when the driver is used (the ``ipmi`` extra).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import SecretStr

from tether.errors import ConfigError
from tether.extras import import_extra, requires_extra

from ._device import DevicePower
from ._errors import (
    PowerDeviceAuthError,
    PowerDeviceError,
    PowerDeviceRefused,
    PowerDeviceTimeout,
    PowerDeviceUnreachable,
)

__all__ = ["IpmiPower"]

T = TypeVar("T")

# pyghmi's IpmiException texts that mean "not these credentials".
_AUTH_TEXTS = ("password", "unauthorized", "username", "privilege", "rakp", "kg")
_TIMEOUT_TEXTS = ("timeout", "no longer connected", "unable to establish")


@requires_extra("ipmi")
class IpmiPower(DevicePower):
    """Chassis power of a server through its BMC (IPMI 2.0 over LAN).

    Config:
        host: the BMC's address.
        port: the BMC's RMCP+ UDP port.
        user, password: a BMC user allowed chassis control (operator or administrator).
        kg: the BMC key (K_g), when the BMC has one set.
        soft_off: ``off`` asks the OS to shut down (ACPI soft-off) instead of cutting power.
        timeout: seconds one request may take, login included.
    """

    host: str
    port: int = 623
    user: str
    password: SecretStr
    kg: SecretStr | None = None
    soft_off: bool = False
    timeout: float = 15.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(self.user.encode()) > 16:
            raise ConfigError("IpmiPower.user: IPMI user names have at most 16 bytes")
        self._command: Any = None
        self._worker: concurrent.futures.ThreadPoolExecutor | None = None

    def device(self) -> str:
        return f"ipmi://{self.host}:{self.port}"

    # -- on the worker thread ---------------------------------------------------------------

    def _session(self) -> Any:
        if self._command is None:
            command = import_extra("ipmi", "pyghmi.ipmi.command", "tether.drivers.power.IpmiPower")
            # Bytes, not str: pyghmi keys its shared sessions by what it is given but removes
            # and matches them by the encoded bytes, so str credentials leave a stale entry
            # that hangs the next login with the same ones (pyghmi 1.6).
            self._command = command.Command(
                bmc=self.host,
                userid=self.user.encode(),
                password=self.password.get_secret_value().encode(),
                port=self.port,
                kg=self.kg.get_secret_value().encode() if self.kg is not None else None,
            )
        return self._command

    def _call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(session)``; pyghmi's exceptions become power errors naming the BMC."""
        errors = import_extra("ipmi", "pyghmi.exceptions", "tether.drivers.power.IpmiPower")
        where = f"{self.device()}: {what}"
        try:
            return fn(self._session())
        except errors.IpmiException as exc:
            self._drop()
            text = str(exc)
            lowered = text.lower()
            code = getattr(exc, "ipmicode", 0)
            if code:
                raise PowerDeviceRefused(
                    f"{where}: the BMC answered completion code 0x{code:02x} ({text})"
                ) from None
            if any(key in lowered for key in _AUTH_TEXTS):
                raise PowerDeviceAuthError(
                    f"{where}: the BMC refused user {self.user!r}: {text}"
                ) from None
            # pyghmi gives up a login nobody answers with an IpmiException whose text is None
            if text in ("", "None") or any(key in lowered for key in _TIMEOUT_TEXTS):
                raise PowerDeviceTimeout(
                    f"{where}: no answer from the BMC" + (f" ({text})" if text != "None" else "")
                ) from None
            raise PowerDeviceError(f"{where}: {text}") from None
        except (socket.gaierror, OSError) as exc:
            self._drop()
            raise PowerDeviceUnreachable(f"{where}: cannot reach the BMC: {exc}") from None

    def _drop(self) -> None:
        # No logout: pyghmi shares one session per BMC and credentials across the process
        # (another driver may be using it) and keeps it alive; it drops broken ones itself.
        self._command = None

    async def _run(self, what: str, fn: Callable[[Any], T]) -> T:
        if self._worker is None:
            self._worker = concurrent.futures.ThreadPoolExecutor(1, f"tether-ipmi-{self.host}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._worker, self._call, what, fn)

    # -- DevicePower ----------------------------------------------------------------------

    async def _switch(self, on: bool) -> None:
        state = "on" if on else ("shutdown" if self.soft_off else "off")
        await self._run(f"chassis power {state}", lambda ipmi: ipmi.set_power(state, wait=False))

    async def _query(self) -> bool:
        answer = await self._run("chassis power status", lambda ipmi: ipmi.get_power())
        state = answer.get("powerstate") if isinstance(answer, dict) else None
        if state not in ("on", "off"):
            raise PowerDeviceRefused(f"{self.device()}: unexpected power state {answer!r}")
        return bool(state == "on")

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.shutdown(wait=False, cancel_futures=True)
            self._worker = None
