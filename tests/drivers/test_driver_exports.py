"""The public names of the driver packages (one front per package)."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "tether.drivers": ["ENTRY_POINT_GROUP", "DriverEntry", "discover_drivers"],
    "tether.drivers.power": [
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
        "SNMP_PROFILES",
        "SnmpOids",
        "SnmpPower",
    ],
    "tether.drivers.serial": [
        "Console",
        "ConsoleBusy",
        "ConsoleClosed",
        "ConsoleFanout",
        "ConsoleLog",
        "ConsoleReadOnly",
        "ConsoleReader",
        "DeviceDisconnected",
        "ExpectTimeout",
        "PySerial",
        "SerialClient",
        "SerialInterface",
        "SerialSettings",
        "interactive",
    ],
    "tether.drivers.network": [
        "DatagramClient",
        "DatagramConnection",
        "DatagramInterface",
        "FrameDecoder",
        "NetworkClient",
        "NetworkInterface",
        "TcpNetwork",
        "UdpNetwork",
        "UnixNetwork",
        "encode_frame",
    ],
    "tether.drivers.shell": [
        "CommandFailed",
        "CommandInfo",
        "CommandSpec",
        "ParamInfo",
        "ParamSpec",
        "ProcessResult",
        "Shell",
        "ShellClient",
        "ShellInterface",
        "ShellOutput",
        "ShellResult",
        "run_command",
    ],
    "tether.drivers.composite": ["Composite"],
}


@pytest.mark.parametrize("package", sorted(PUBLIC))
def test_public_names(package: str) -> None:
    module = importlib.import_module(package)
    assert sorted(module.__all__) == sorted(PUBLIC[package])
    for name in module.__all__:
        assert getattr(module, name) is not None


def test_errors_are_tether_errors() -> None:
    from tether.drivers.serial import ConsoleClosed, DeviceDisconnected, ExpectTimeout
    from tether.drivers.shell import CommandFailed
    from tether.errors import TetherError

    for error in (ConsoleClosed, DeviceDisconnected, ExpectTimeout, CommandFailed):
        assert issubclass(error, TetherError)
    assert issubclass(ExpectTimeout, TimeoutError)
    assert issubclass(DeviceDisconnected, ConnectionError)


def test_interfaces_name_their_clients() -> None:
    from tether.drivers.network import DatagramInterface, NetworkInterface
    from tether.drivers.power import PowerInterface
    from tether.drivers.serial import SerialInterface
    from tether.drivers.shell import ShellInterface

    for interface in (
        PowerInterface,
        SerialInterface,
        NetworkInterface,
        DatagramInterface,
        ShellInterface,
    ):
        module, _, name = interface.client.rpartition(".")
        assert getattr(importlib.import_module(module), name).interface is interface
