"""Driver discovery (entry-point group tether.drivers) and `tether driver list`."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tether.cli import main
from tether.drivers import ENTRY_POINT_GROUP, discover_drivers
from tether.drivers.power import MockPower

BUILT_IN = {
    "tether.drivers.power.MockPower",
    "tether.drivers.power.CommandPower",
    "tether.drivers.power.HttpPower",
    "tether.drivers.serial.PySerial",
    "tether.drivers.network.TcpNetwork",
    "tether.drivers.network.UdpNetwork",
    "tether.drivers.network.UnixNetwork",
    "tether.drivers.shell.Shell",
    "tether.drivers.composite.Composite",
    "tether.drivers.storage.MockStorageMux",
    "tether.drivers.storage.StorageMux",
    "tether.drivers.storage.MockFlasher",
    "tether.drivers.storage.Flasher",
    "tether.drivers.qemu.Qemu",
}

MODULE = '''
from tether import Driver, Interface, export

class Relay(Interface):
    name = "acme.relay"
    version = 2
    client = "acme_relay.RelayClient"

class AcmeRelay(Relay, Driver):
    """An ACME relay board.

    More text.
    """
    channels: int = 8

    @export
    async def toggle(self, channel: int) -> None: ...

NOT_A_DRIVER = 42

raise_on_import = None
'''


@pytest.fixture
def third_party(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An installed third-party distribution: one good driver and three broken entries."""
    (tmp_path / "acme_relay.py").write_text(MODULE)
    (tmp_path / "acme_broken.py").write_text("raise RuntimeError('firmware blob missing')\n")
    info = tmp_path / "acme_relay-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-relay\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "acme_relay.AcmeRelay = acme_relay:AcmeRelay\n"
        "acme_relay.Gone = acme_gone:Gone\n"
        "acme_relay.Broken = acme_broken:Broken\n"
        "acme_relay.NotADriver = acme_relay:NOT_A_DRIVER\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("acme_relay", None)


def test_every_built_in_driver_is_registered() -> None:
    entries = {entry.name: entry for entry in discover_drivers()}
    assert set(entries) >= BUILT_IN
    for name in BUILT_IN - {n for n in BUILT_IN if ".storage." in n or ".qemu." in n}:
        assert entries[name].ok, entries[name].error
        assert entries[name].distribution == "tether"
        module, _, attribute = name.rpartition(".")
        assert entries[name].driver is getattr(importlib.import_module(module), attribute)
    assert entries["tether.drivers.power.MockPower"].driver is MockPower
    assert entries["tether.drivers.power.MockPower"].interfaces == [
        {"name": "tether.power", "version": 1, "client": "tether.drivers.power.PowerClient"}
    ]


@pytest.mark.usefixtures("third_party")
def test_third_party_drivers_and_broken_entries() -> None:
    entries = {entry.name: entry for entry in discover_drivers()}
    good = entries["acme_relay.AcmeRelay"]
    assert good.ok and good.distribution == "acme-relay"
    data = good.describe()
    assert data["interfaces"] == [
        {"name": "acme.relay", "version": 2, "client": "acme_relay.RelayClient"}
    ]
    assert list(data["methods"]) == ["toggle"]
    assert data["methods"]["toggle"].startswith("toggle(channel: int)")
    assert data["config"] == {"channels": {"type": "int", "default": 8}}
    assert data["doc"] == "An ACME relay board."
    assert (
        entries["acme_relay.Gone"].error
        == "cannot load acme_gone:Gone: no module named 'acme_gone'"
    )
    assert entries["acme_relay.Broken"].error == (
        "cannot load acme_broken:Broken: RuntimeError: firmware blob missing"
    )
    assert entries["acme_relay.NotADriver"].error == (
        "acme_relay:NOT_A_DRIVER is not a tether Driver subclass (got 42)"
    )
    assert entries["tether.drivers.shell.Shell"].ok  # one bad entry breaks nothing else


@pytest.mark.usefixtures("third_party")
def test_tether_driver_list_json() -> None:
    result = CliRunner().invoke(main, ["driver", "list", "--json"])
    assert result.exit_code == 0, result.output
    entries = {entry["name"]: entry for entry in json.loads(result.output)}
    assert set(entries) >= BUILT_IN
    serial = entries["tether.drivers.serial.PySerial"]
    assert serial["interfaces"][0]["name"] == "tether.serial"
    assert set(serial["methods"]) == {"connect", "settings", "log", "log_size"}
    assert serial["config"]["url"] == {"type": "str", "required": True}
    assert serial["config"]["baudrate"] == {"type": "int", "default": 115200}
    assert entries["acme_relay.Gone"]["error"].startswith("cannot load")
    assert "interfaces" not in entries["acme_relay.Gone"]


@pytest.mark.usefixtures("third_party")
def test_tether_driver_list_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result = CliRunner().invoke(main, ["driver", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    row = next(line for line in lines if "tether.drivers.shell.Shell" in line)
    assert "tether.shell v1" in row and "list_commands, run" in row
    row = next(line for line in lines if "acme_relay.AcmeRelay" in line)
    assert "acme.relay v2" in row and "toggle" in row and "acme-relay" in row
    row = next(line for line in lines if "acme_relay.Gone" in line)
    assert "error" in row
    broken = sum(1 for entry in discover_drivers() if not entry.ok)
    assert broken >= 3
    assert f"{broken} driver(s) could not be loaded" in result.output
