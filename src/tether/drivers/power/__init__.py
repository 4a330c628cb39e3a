"""Power: switch a device on and off, cycle it, read voltage and current.

Drivers: :class:`MockPower` (in memory), :class:`CommandPower` (shell commands),
:class:`HttpPower` (REST-controlled sockets and PDUs), :class:`SnmpPower` (PDU outlets over
SNMP), :class:`ModbusPower` / :class:`ModbusRelayBoard` (Modbus TCP relays) and
:class:`IpmiPower` (a BMC's chassis power over IPMI 2.0 LAN). The last three need their
extras (``tether[snmp]``, ``tether[modbus]``, ``tether[ipmi]``), imported only when they run.
"""

from ._board import BoardPower, PoweredBoard
from ._client import PowerClient
from ._command import CommandPower
from ._device import DevicePower
from ._driver import MockPower
from ._errors import (
    PowerDeviceAuthError,
    PowerDeviceError,
    PowerDeviceRefused,
    PowerDeviceTimeout,
    PowerDeviceUnreachable,
)
from ._http import HttpAction, HttpPower, HttpReadAction, HttpStatusAction
from ._interface import PowerInterface, PowerReading
from ._ipmi import IpmiPower
from ._modbus import ModbusPower, ModbusRelayBoard
from ._snmp import SNMP_PROFILES, SnmpOids, SnmpPower

__all__ = [
    "SNMP_PROFILES",
    "BoardPower",
    "CommandPower",
    "DevicePower",
    "HttpAction",
    "HttpPower",
    "HttpReadAction",
    "HttpStatusAction",
    "IpmiPower",
    "MockPower",
    "ModbusPower",
    "ModbusRelayBoard",
    "PowerClient",
    "PowerDeviceAuthError",
    "PowerDeviceError",
    "PowerDeviceRefused",
    "PowerDeviceTimeout",
    "PowerDeviceUnreachable",
    "PowerInterface",
    "PowerReading",
    "PoweredBoard",
    "SnmpOids",
    "SnmpPower",
]
