"""``ModbusPower`` and ``ModbusRelayBoard``: relays behind Modbus TCP coils (pymodbus).

One :class:`ModbusLink` owns one pymodbus client: it connects on first use, sends one request
at a time, and drops the connection after a failure so the next request dials again (a relay
board that rebooted is reached again without restarting the exporter). pymodbus is imported
only here, when a link is first used (the ``modbus`` extra).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from tether.driver import Driver, export
from tether.errors import ConfigError
from tether.extras import import_extra, requires_extra

from ._device import DevicePower
from ._errors import (
    PowerDeviceError,
    PowerDeviceRefused,
    PowerDeviceTimeout,
    PowerDeviceUnreachable,
)

__all__ = ["ModbusLink", "ModbusPower", "ModbusRelayBoard"]

# Modbus exception codes (Modbus Application Protocol v1.1b3, section 7).
_EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class ModbusLink:
    """One Modbus TCP connection to ``host:port``, shared by the coils of one device."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._pymodbus: tuple[Any, Any] | None = None  # (pymodbus.client, .exceptions)

    def _modules(self) -> tuple[Any, Any]:
        """pymodbus's client and exceptions modules, imported on first use (once: a call
        costs a few hundred microseconds, an import lookup each time shows)."""
        if self._pymodbus is None:
            who = "tether.drivers.power.ModbusPower"
            self._pymodbus = (
                import_extra("modbus", "pymodbus.client", who),
                import_extra("modbus", "pymodbus.exceptions", who),
            )
        return self._pymodbus

    @property
    def name(self) -> str:
        return f"modbus://{self.host}:{self.port}"

    async def _connected(self) -> Any:
        if self._client is not None and self._client.connected:
            return self._client
        client_module = self._modules()[0]
        self.close()
        client = client_module.AsyncModbusTcpClient(
            self.host, port=self.port, timeout=self.timeout, retries=0, reconnect_delay=0
        )
        try:
            ok = await client.connect()
        except OSError as exc:
            ok, why = False, str(exc)
        else:
            why = "connection refused or no route"
        if not ok:
            client.close()
            raise PowerDeviceUnreachable(f"{self.name}: cannot connect ({why})")
        self._client = client
        return client

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """pymodbus exceptions to power errors (connection dropped so the next call redials)."""
        errors = self._modules()[1]
        try:
            yield
        except PowerDeviceError:
            self.close()
            raise
        except errors.ModbusIOException as exc:
            self.close()
            raise PowerDeviceTimeout(
                f"{self.name}: no answer to {what} within {self.timeout} s ({exc})"
            ) from None
        except (errors.ConnectionException, OSError) as exc:
            self.close()
            raise PowerDeviceUnreachable(f"{self.name}: {what} failed: {exc}") from None
        except errors.ModbusException as exc:
            self.close()
            raise PowerDeviceError(f"{self.name}: {what} failed: {exc}") from None
        except (TimeoutError, asyncio.CancelledError):
            self.close()
            raise

    def _refused(self, response: Any, what: str, unit: int, coil: int) -> PowerDeviceRefused:
        code = getattr(response, "exception_code", None)
        meaning = _EXCEPTIONS.get(code, "unknown exception") if code is not None else "error"
        return PowerDeviceRefused(
            f"{self.name} unit {unit} coil {coil}: {what} answered with Modbus exception "
            f"{code} ({meaning})"
        )

    async def write_coil(self, unit: int, coil: int, value: bool) -> None:
        """Write one coil (function 5)."""
        async with self._lock:
            with self._errors(f"write coil {coil}"):
                client = await self._connected()
                response = await client.write_coil(coil, value, device_id=unit)
            if response.isError():
                raise self._refused(response, f"write coil {coil}", unit, coil)

    async def read_coils(self, unit: int, first: int, count: int) -> list[bool]:
        """Read ``count`` coils from ``first`` (function 1)."""
        async with self._lock:
            with self._errors(f"read coil {first}"):
                client = await self._connected()
                response = await client.read_coils(first, count=count, device_id=unit)
            if response.isError():
                what = f"read coils {first}..{first + count - 1}"
                raise self._refused(response, what, unit, first)
        return [bool(bit) for bit in response.bits[:count]]

    def close(self) -> None:
        """Drop the connection (the next request dials again)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()


@requires_extra("modbus")
class ModbusPower(DevicePower):
    """One relay on a Modbus TCP device: a coil, written on (1) or off (0).

    Config:
        host: the device's address.
        port: Modbus TCP port.
        unit: the Modbus unit (slave / device) id.
        coil: the coil address (0-based, as on the wire; manuals that count from 1 mean
            ``coil: N-1``).
        inverted: the relay is wired normally closed: coil 1 means power off.
        timeout: seconds one request may take (connect included).
    """

    host: str
    port: int = 502
    unit: int = 1
    coil: int = 0
    inverted: bool = False

    _link: ModbusLink | None = None  # set by ModbusRelayBoard to share its connection
    _shared: bool = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0 <= self.coil <= 0xFFFF:
            raise ConfigError(f"ModbusPower.coil: {self.coil} is not a coil address (0..65535)")
        if not 0 <= self.unit <= 247:
            raise ConfigError(f"ModbusPower.unit: {self.unit} is not a unit id (0..247)")

    def _the_link(self) -> ModbusLink:
        if self._link is None:
            self._link = ModbusLink(self.host, self.port, self.timeout)
        return self._link

    def device(self) -> str:
        return f"modbus://{self.host}:{self.port} unit {self.unit} coil {self.coil}"

    async def _switch(self, on: bool) -> None:
        await self._the_link().write_coil(self.unit, self.coil, on != self.inverted)

    async def _query(self) -> bool:
        (bit,) = await self._the_link().read_coils(self.unit, self.coil, 1)
        return bit != self.inverted

    def stop(self) -> None:
        if self._link is not None and not self._shared:
            self._link.close()


@requires_extra("modbus")
class ModbusRelayBoard(Driver):
    """A multi-channel Modbus TCP relay board: one child :class:`ModbusPower` per channel,
    all over the board's one connection.

    Config:
        host, port, unit, timeout, inverted: as for :class:`ModbusPower`, for every channel.
        channels: child name -> coil address (``{dut1: 0, dut2: 1}``).
    """

    host: str
    port: int = 502
    unit: int = 1
    timeout: float = 5.0
    inverted: bool = False
    channels: dict[str, int]

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.pop("children", None):
            raise ConfigError("ModbusRelayBoard makes its own children (from `channels`)")
        super().__init__(**kwargs)
        if not self.channels:
            raise ConfigError("ModbusRelayBoard.channels: give at least one channel")
        self._link = ModbusLink(self.host, self.port, self.timeout)
        self.children = dict(self._make_children(self.channels))

    def _make_children(self, channels: Mapping[str, int]) -> Iterator[tuple[str, ModbusPower]]:
        for name, coil in channels.items():
            child = ModbusPower(
                host=self.host,
                port=self.port,
                unit=self.unit,
                coil=coil,
                inverted=self.inverted,
                timeout=self.timeout,
                description=f"relay {name} (coil {coil})",
            )
            child._link, child._shared = self._link, True
            yield name, child

    @export
    async def states(self) -> dict[str, bool]:
        """Every channel's state (True: on), read in one request."""
        first, last = min(self.channels.values()), max(self.channels.values())
        try:
            async with asyncio.timeout(self.timeout):
                bits = await self._link.read_coils(self.unit, first, last - first + 1)
        except TimeoutError:
            raise PowerDeviceTimeout(
                f"{self._link.name}: no answer to read coils within {self.timeout} s"
            ) from None
        return {name: bits[coil - first] != self.inverted for name, coil in self.channels.items()}

    @export
    async def all_off(self) -> None:
        """Switch every channel off."""
        for child in self.children.values():
            assert isinstance(child, ModbusPower)
            await child.off()

    def stop(self) -> None:
        self._link.close()
