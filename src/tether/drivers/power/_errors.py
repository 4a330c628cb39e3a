"""Errors of power devices on the network (PDUs, relay boards, BMCs).

Each is a :class:`~tether.errors.DriverError`, so it crosses the wire as one; ``remote_type``
names the public class and :class:`~tether.drivers.power.PowerClient` raises the same class
again on the client. Messages name the device (``snmp://pdu.lab:161 outlet 3``) and what
happened, never a community, password or key.
"""

from __future__ import annotations

from typing import Any

from tether.errors import DriverError, DriverTimeout

__all__ = [
    "POWER_ERRORS",
    "PowerDeviceAuthError",
    "PowerDeviceError",
    "PowerDeviceRefused",
    "PowerDeviceTimeout",
    "PowerDeviceUnreachable",
]


class PowerDeviceError(DriverError):
    """A power device failed a request; the message names the device and what happened."""

    def __init__(self, message: str, **details: Any) -> None:
        details.setdefault("remote_type", f"tether.drivers.power.{type(self).__name__}")
        super().__init__(message, **details)


class PowerDeviceUnreachable(PowerDeviceError, ConnectionError):
    """The device cannot be reached (connection refused, no route, unknown host)."""


class PowerDeviceTimeout(PowerDeviceError, DriverTimeout):
    """The device did not answer within the configured ``timeout``."""


class PowerDeviceAuthError(PowerDeviceError):
    """The device refused our credentials (SNMP community or v3 user, IPMI user/password)."""


class PowerDeviceRefused(PowerDeviceError):
    """The device answered with an error (an SNMP error status, a Modbus exception code, an
    IPMI completion code)."""


#: By public name, for the client to raise the same class again.
POWER_ERRORS: dict[str, type[PowerDeviceError]] = {
    f"tether.drivers.power.{cls.__name__}": cls
    for cls in (
        PowerDeviceError,
        PowerDeviceUnreachable,
        PowerDeviceTimeout,
        PowerDeviceAuthError,
        PowerDeviceRefused,
    )
}
