"""ModbusPower and ModbusRelayBoard against pymodbus's own Modbus TCP server.

The server (``power_peers.run_modbus_server``) runs on a thread with its own loop; the test
reads the coils through the server's datastore, independently of tether. Cycle waits and
timeouts are checked in the test kit's virtual time with the device link replaced by one that
records or never answers (the kit's clock cannot wait on a real socket).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from power_peers import ModbusServer, black_hole, refused_port, run_modbus_server

import tether
from tether.drivers.power import (
    ModbusPower,
    ModbusRelayBoard,
    PowerClient,
    PowerDeviceRefused,
    PowerDeviceTimeout,
    PowerDeviceUnreachable,
)
from tether.errors import ConfigError, DriverError
from tether.exporter import init_lab_certs, parse_config, run_exporter_in_thread
from tether.testing import DriverTestConfig, ForegroundDriverTest, serve


@pytest.fixture(scope="module")
def modbus() -> Iterator[ModbusServer]:
    with run_modbus_server(coils=8, units=(1, 2)) as server:
        yield server


# -- against pymodbus's server ----------------------------------------------------------------


def test_on_off_status_write_the_coil_the_server_holds(modbus: ModbusServer) -> None:
    with serve(ModbusPower(host="127.0.0.1", port=modbus.port, coil=2)) as power:
        assert isinstance(power, PowerClient)
        power.off()
        assert power.status() is False and modbus.coils()[2] is False
        power.on()
        assert modbus.coils()[2] is True
        assert power.status() is True
        power.cycle(0)
        assert power.status() is True
        power.off()
        assert modbus.coils()[2] is False


def test_unit_and_inverted_wiring(modbus: ModbusServer) -> None:
    with serve(ModbusPower(host="127.0.0.1", port=modbus.port, unit=2, coil=5, inverted=True)) as p:
        p.on()
        assert modbus.coils(unit=2)[5] is False  # normally closed: coil 0 means powered
        assert p.status() is True
        p.off()
        assert modbus.coils(unit=2)[5] is True
        assert modbus.coils(unit=1)[5] is False  # unit 1 untouched


def test_a_modbus_exception_code_is_a_clear_error(modbus: ModbusServer) -> None:
    with serve(ModbusPower(host="127.0.0.1", port=modbus.port, coil=300)) as power:
        with pytest.raises(PowerDeviceRefused) as caught:
            power.on()
        message = str(caught.value)
        assert f"modbus://127.0.0.1:{modbus.port} unit 1 coil 300" in message
        assert "Modbus exception 2 (illegal data address)" in message
        assert isinstance(caught.value, DriverError)
        # the session survives: the next call on a good coil of the same server works
    with serve(ModbusPower(host="127.0.0.1", port=modbus.port, coil=1)) as power:
        power.on()
        assert modbus.coils()[1] is True


def test_an_unknown_unit_answers_an_exception(modbus: ModbusServer) -> None:
    power = ModbusPower(host="127.0.0.1", port=modbus.port, unit=9, coil=0)
    with (
        serve(power) as client,
        pytest.raises(PowerDeviceRefused, match=r"unit 9 .*Modbus exception \d+"),
    ):
        client.status()


def test_connection_refused_is_unreachable() -> None:
    port = refused_port()
    with (
        serve(ModbusPower(host="127.0.0.1", port=port, timeout=5)) as power,
        pytest.raises(PowerDeviceUnreachable, match=rf"modbus://127.0.0.1:{port}: cannot connect"),
    ):
        power.on()


def test_a_device_that_never_answers_times_out_within_the_timeout() -> None:
    with (
        black_hole() as port,
        serve(ModbusPower(host="127.0.0.1", port=port, timeout=0.5)) as power,
        pytest.raises(PowerDeviceTimeout, match=rf"modbus://127.0.0.1:{port}.*0.5 s"),
    ):
        power.on()


def test_relay_board_channels_share_one_connection(modbus: ModbusServer) -> None:
    board = ModbusRelayBoard(host="127.0.0.1", port=modbus.port, channels={"dut1": 6, "dut2": 7})
    with serve(board) as client:
        assert set(client.children) == {"dut1", "dut2"}
        client.children["dut1"].on()
        client.children["dut2"].off()
        assert modbus.coils()[6:8] == [True, False]
        assert client.call("states") == {"dut1": True, "dut2": False}
        client.call("all_off")
        assert modbus.coils()[6:8] == [False, False]
    links = {id(child._link) for child in board.children.values()}  # type: ignore[attr-defined]
    assert links == {id(board._link)}


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="coil"):
        ModbusPower(host="h", coil=70000)
    with pytest.raises(ConfigError, match="unit"):
        ModbusPower(host="h", unit=300)
    with pytest.raises(ConfigError, match="channels"):
        ModbusRelayBoard(host="h", channels={})


# -- the test kit: virtual time ---------------------------------------------------------------


class RecordingLink:
    """Stands in for the Modbus link: records writes with the (virtual) time; or never answers."""

    name = "modbus://test:502"

    def __init__(self, hang: bool = False) -> None:
        self.hang = hang
        self.writes: list[tuple[float, int, bool]] = []
        self.coils: dict[int, bool] = {}

    async def write_coil(self, unit: int, coil: int, value: bool) -> None:
        if self.hang:
            await asyncio.Event().wait()
        self.writes.append((asyncio.get_running_loop().time(), coil, value))
        self.coils[coil] = value

    async def read_coils(self, unit: int, first: int, count: int) -> list[bool]:
        return [self.coils.get(first + i, False) for i in range(count)]

    def close(self) -> None:
        pass


def kit_power(link: RecordingLink, **config: Any) -> type[ModbusPower]:
    class KitModbusPower(ModbusPower):
        def _the_link(self) -> Any:
            return link

    return KitModbusPower


def test_cycle_waits_in_virtual_time() -> None:
    link = RecordingLink()
    with ForegroundDriverTest(
        DriverTestConfig(kit_power(link), driver_config={"host": "test", "coil": 4})
    ) as test:
        test.start_driver()
        rt = test.runtime
        start = rt.now()
        rt.run_to_completion(test.driver.cycle(600))
        assert [(round(t - start), coil, value) for t, coil, value in link.writes] == [
            (0, 4, False),
            (600, 4, True),
        ]
        assert rt.run_to_completion(test.driver.status()) is True


def test_a_hung_device_fails_at_the_timeout_in_virtual_time() -> None:
    link = RecordingLink(hang=True)
    config = DriverTestConfig(
        kit_power(link), driver_config={"host": "test", "coil": 1, "timeout": 30}
    )
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        rt = test.runtime
        start = rt.now()
        with pytest.raises(
            PowerDeviceTimeout,
            match=r"modbus://test:502 unit 1 coil 1: no answer to power on within 30.0 s",
        ):
            rt.run_to_completion(test.driver.on())
        assert rt.now() - start == pytest.approx(30)


# -- end to end: a TLS exporter, pymodbus's server behind it ----------------------------------


def test_through_a_tls_exporter(
    modbus: ModbusServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certs = init_lab_certs(tmp_path / "certs")
    config = parse_config(
        f"""\
name: relay-lab
tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}
export:
  power:
    type: tether.drivers.power.ModbusPower
    config: {{host: 127.0.0.1, port: {modbus.port}, coil: 3, timeout: 5}}
  broken:
    type: tether.drivers.power.ModbusPower
    config: {{host: 127.0.0.1, port: {modbus.port}, coil: 999}}
  relays:
    type: tether.drivers.power.ModbusRelayBoard
    config: {{host: 127.0.0.1, port: {modbus.port}, unit: 2, channels: {{a: 0, b: 1}}}}
""",
        "relay-lab.yaml",
    )
    with (
        run_exporter_in_thread(config, listen="tls://127.0.0.1:0") as running,
        tether.connect(running.url, running.token, ca=certs.ca) as dut,
    ):
        assert isinstance(dut.power, PowerClient)
        dut.power.on()
        assert modbus.coils()[3] is True and dut.power.status() is True
        with pytest.raises(PowerDeviceRefused, match="illegal data address"):
            dut.broken.on()
        dut.power.off()  # the exporter keeps serving after the error
        assert modbus.coils()[3] is False
        dut.relays.children["b"].on()
        assert modbus.coils(unit=2)[:2] == [False, True]
        assert dut.relays.call("states") == {"a": False, "b": True}


def test_dut_commands(modbus: ModbusServer) -> None:
    from click.testing import CliRunner

    from tether.cli.dut import build_dut
    from tether.drivers.composite import Composite

    tree = Composite(
        children={
            "relays": ModbusRelayBoard(host="127.0.0.1", port=modbus.port, channels={"a": 4}),
            "bad": ModbusPower(host="127.0.0.1", port=modbus.port, coil=500),
        }
    )
    with serve(tree) as lab:

        def dut(*args: str) -> tuple[int, str]:
            result = CliRunner().invoke(build_dut(lab), list(args), prog_name="dut")
            return result.exit_code, result.output

        assert dut("relays", "a", "on") == (0, "")
        assert modbus.coils()[4] is True
        assert dut("relays", "a", "status") == (0, "true\n")
        code, out = dut("relays", "states")
        assert code == 0 and '"a": true' in out.replace("'", '"')
        assert dut("relays", "all-off")[0] == 0 and modbus.coils()[4] is False
        code, out = dut("bad", "on")
        assert code == 1 and f"modbus://127.0.0.1:{modbus.port} unit 1 coil 500" in out
        assert "illegal data address" in out
