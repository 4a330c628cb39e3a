"""Optional extras: a driver whose library is missing fails at config check with the pip line.

A missing library is simulated by putting ``None`` in ``sys.modules`` for it and its
submodules (what Python does for a module that failed to import: the next import raises
``ModuleNotFoundError``). The controller's extra is checked in a child process, where the
controller has not been imported yet.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tether.cli import main
from tether.drivers import discover_drivers
from tether.drivers.power import IpmiPower, ModbusPower, ModbusRelayBoard, SnmpPower
from tether.drivers.storage import UsbSdMux
from tether.errors import ConfigError, DriverError
from tether.extras import EXTRAS, MissingExtra, install_line, missing_extra
from tether.testing import serve

DRIVERS = [
    (SnmpPower, "snmp", {"host": "pdu", "outlet": 1}),
    (ModbusPower, "modbus", {"host": "relay"}),
    (ModbusRelayBoard, "modbus", {"host": "relay", "channels": {"a": 0}}),
    (IpmiPower, "ipmi", {"host": "bmc", "user": "u", "password": "p"}),
    (UsbSdMux, "usbsdmux", {"sg": "/dev/sg0", "path": "/dev/sda"}),
]


def hide(monkeypatch: pytest.MonkeyPatch, extra: str) -> None:
    """Make the extra's modules (and every submodule already imported) fail to import."""
    for top in EXTRAS[extra]:
        for name in [n for n in sys.modules if n == top or n.startswith(top + ".")]:
            monkeypatch.setitem(sys.modules, name, None)
        monkeypatch.setitem(sys.modules, top, None)


def test_installed_extras_are_not_reported() -> None:
    for cls, _, _ in DRIVERS:
        assert missing_extra(cls) is None
    entries = {entry.name: entry for entry in discover_drivers()}
    for cls, _, _ in DRIVERS:
        entry = entries[f"{cls.__module__.rsplit('._', 1)[0]}.{cls.__name__}"]
        assert entry.ok, entry.error


@pytest.mark.parametrize(
    ("cls", "extra", "config"), DRIVERS, ids=lambda v: getattr(v, "__name__", None)
)
def test_a_missing_extra_names_the_pip_line(
    monkeypatch: pytest.MonkeyPatch, cls: type, extra: str, config: dict[str, object]
) -> None:
    hide(monkeypatch, extra)
    problem = missing_extra(cls)
    assert isinstance(problem, MissingExtra) and isinstance(problem, ConfigError)
    name = f"{cls.__module__.rsplit('._', 1)[0]}.{cls.__name__}"
    assert str(problem) == (
        f"{name} needs the {extra!r} extra (module {EXTRAS[extra][0]!r} is not installed): "
        f"pip install 'tether[{extra}]'"
    )
    cls(**config)  # the class still imports and validates its config without the library


@pytest.mark.parametrize(
    ("cls", "extra", "config"), DRIVERS[:4], ids=lambda v: getattr(v, "__name__", None)
)
def test_exporter_check_reports_the_missing_extra(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    cls: type,
    extra: str,
    config: dict[str, object],
) -> None:
    hide(monkeypatch, extra)
    name = f"{cls.__module__.rsplit('._', 1)[0]}.{cls.__name__}"
    fields = ", ".join(f"{key}: {value}" for key, value in config.items() if key != "channels")
    if "channels" in config:
        fields += ", channels: {a: 0}"
    path = tmp_path / "lab.yaml"
    path.write_text(f"name: lab\nexport:\n  dev:\n    type: {name}\n    config: {{{fields}}}\n")
    result = CliRunner().invoke(main, ["exporter", "check", str(path)])
    assert result.exit_code == 2
    assert f"lab.yaml:4: export.dev.type: {name} needs the {extra!r} extra" in result.output
    assert result.output.rstrip().endswith(f"pip install 'tether[{extra}]'")


def test_a_driver_started_without_its_extra_fails_with_the_pip_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hide(monkeypatch, "modbus")
    with (
        serve(ModbusPower(host="127.0.0.1", port=1)) as power,
        pytest.raises(DriverError, match=r"pip install 'tether\[modbus\]'"),
    ):
        power.on()


def test_install_line() -> None:
    assert install_line("snmp") == "pip install 'tether[snmp]'"
    with pytest.raises(ValueError, match="unknown extra"):
        missing_extra(type("X", (), {"__tether_extra__": "nope"}))


CHILD = """
import sys
for name in ("fastapi", "sqlalchemy", "alembic", "psycopg", "uvicorn"):
    sys.modules[name] = None
import tether, tether.client, tether.exporter, tether.cli, tether.drivers.power  # no controller libs
try:
    import tether.controller
except ImportError as exc:
    print(type(exc).__name__, exc)
"""


def test_nothing_but_the_controller_needs_the_controller_extra() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == (
        "MissingExtra tether.controller needs the 'controller' extra (module 'fastapi' is not "
        "installed): pip install 'tether[controller]'"
    )


def test_the_controller_command_names_the_extra() -> None:
    child = (
        "import sys\n"
        "sys.modules['sqlalchemy'] = None\n"
        "from tether.cli import main\n"
        "main(['controller', 'serve'])\n"
    )
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "pip install 'tether[controller]'" in out.stderr


def test_public_names() -> None:
    import tether.drivers.power
    import tether.extras

    for module in (tether.extras, tether.drivers.power):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
    for name in (
        "SnmpPower",
        "ModbusPower",
        "ModbusRelayBoard",
        "IpmiPower",
        "PowerDeviceError",
        "PowerDeviceUnreachable",
        "PowerDeviceTimeout",
        "PowerDeviceAuthError",
        "PowerDeviceRefused",
    ):
        assert name in tether.drivers.power.__all__


def test_driver_list_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    hide(monkeypatch, "ipmi")
    result = CliRunner().invoke(main, ["driver", "list", "--json"])
    assert result.exit_code == 0, result.output
    entries = {entry["name"]: entry for entry in json.loads(result.output)}
    assert entries["tether.drivers.power.IpmiPower"]["missing_extra"].endswith(
        "pip install 'tether[ipmi]'"
    )
    assert entries["tether.drivers.power.SnmpPower"]["missing_extra"] is None
    table = CliRunner().invoke(main, ["driver", "list"], env={"COLUMNS": "400"})
    assert "(needs pip install 'tether[ipmi]')" in table.output
