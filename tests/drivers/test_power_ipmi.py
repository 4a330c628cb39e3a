"""IpmiPower against pyghmi's BMC simulator, with Debian's ipmitool as the second client.

The simulator (``ipmi_bmc.py``, a ``pyghmi.ipmi.bmc.Bmc`` keeping a power state) runs in its
own process; ipmitool reads and sets the chassis power independently of tether.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from power_peers import BMC_PASSWORD, BMC_USER, Bmc, free_udp_port, ipmitool, run_bmc

import tether
from tether.drivers.power import (
    IpmiPower,
    PowerClient,
    PowerDeviceAuthError,
    PowerDeviceTimeout,
)
from tether.errors import ConfigError
from tether.exporter import init_lab_certs, parse_config, run_exporter_in_thread
from tether.testing import DriverTestConfig, ForegroundDriverTest, serve


@pytest.fixture(scope="module")
def bmc() -> Iterator[Bmc]:
    with run_bmc() as running:
        yield running


def test_chassis_power_as_ipmitool_sees_it(bmc: Bmc) -> None:
    driver = IpmiPower(host="127.0.0.1", port=bmc.port, user=BMC_USER, password=BMC_PASSWORD)
    with serve(driver) as power:
        assert isinstance(power, PowerClient)
        power.off()
        assert ipmitool(bmc, "chassis", "power", "status") == "Chassis Power is off"
        assert power.status() is False
        power.on()
        assert ipmitool(bmc, "chassis", "power", "status") == "Chassis Power is on"
        assert power.status() is True
        ipmitool(bmc, "chassis", "power", "off")  # someone else switches it off
        assert power.status() is False
        power.cycle(0)
        assert ipmitool(bmc, "chassis", "power", "status") == "Chassis Power is on"


def test_a_wrong_password_is_an_auth_error(bmc: Bmc, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    driver = IpmiPower(host="127.0.0.1", port=bmc.port, user=BMC_USER, password="not-it-42")
    with (
        serve(driver) as power,
        pytest.raises(
            PowerDeviceAuthError, match=f"ipmi://127.0.0.1:{bmc.port}.*refused user"
        ) as caught,
    ):
        power.on()
    assert "not-it-42" not in str(caught.value) and "not-it-42" not in caplog.text


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="16 bytes"):
        IpmiPower(host="h", user="x" * 17, password="p")
    with pytest.raises(ConfigError, match="password"):
        IpmiPower(host="h", user="u")


class KitIpmiPower(IpmiPower):
    """The driver with its BMC calls replaced, to run in the kit's virtual time."""

    hang: ClassVar[bool] = False
    calls: ClassVar[list[tuple[float, bool]]] = []

    async def _switch(self, on: bool) -> None:
        if self.hang:
            await asyncio.Event().wait()
        self.calls.append((asyncio.get_running_loop().time(), on))


def test_cycle_and_timeout_in_virtual_time() -> None:
    KitIpmiPower.calls = []
    config = DriverTestConfig(
        KitIpmiPower, driver_config={"host": "bmc", "user": "u", "password": "p"}
    )
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        start = test.runtime.now()
        test.runtime.run_to_completion(test.driver.cycle(120))
        assert [(round(t - start, 3), on) for t, on in KitIpmiPower.calls] == [
            (0, False),
            (120, True),
        ]

    class Hung(KitIpmiPower):
        hang: ClassVar[bool] = True

    config = DriverTestConfig(
        Hung, driver_config={"host": "bmc", "user": "u", "password": "p", "timeout": 45}
    )
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        start = test.runtime.now()
        with pytest.raises(
            PowerDeviceTimeout, match=r"ipmi://bmc:623: no answer to power on within 45\.0 s"
        ):
            test.runtime.run_to_completion(test.driver.on())
        assert test.runtime.now() - start == pytest.approx(45)


def test_through_a_tls_exporter(bmc: Bmc, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    certs = init_lab_certs(tmp_path / "certs")
    config = parse_config(
        f"""\
name: server-lab
tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}
export:
  power:
    type: tether.drivers.power.IpmiPower
    config: {{host: 127.0.0.1, port: {bmc.port}, user: {BMC_USER}, password: {BMC_PASSWORD}, timeout: 30}}
  wrong:
    type: tether.drivers.power.IpmiPower
    config: {{host: 127.0.0.1, port: {bmc.port}, user: {BMC_USER}, password: nope-nope}}
""",
        "server-lab.yaml",
    )
    caplog.set_level(logging.DEBUG)
    with (
        run_exporter_in_thread(config, listen="tls://127.0.0.1:0") as running,
        tether.connect(running.url, running.token, ca=certs.ca) as dut,
    ):
        dut.power.on()
        assert ipmitool(bmc, "chassis", "power", "status") == "Chassis Power is on"
        with pytest.raises(PowerDeviceAuthError):
            dut.wrong.status()
        dut.power.off()  # the exporter keeps serving
        assert ipmitool(bmc, "chassis", "power", "status") == "Chassis Power is off"
        assert dut.power.status() is False
    assert BMC_PASSWORD not in caplog.text and "nope-nope" not in caplog.text


def test_pyghmi_giving_up_is_a_timeout() -> None:
    """With a timeout longer than pyghmi's own login (about 5 s), its failure is mapped."""
    port = free_udp_port()
    driver = IpmiPower(host="127.0.0.1", port=port, user="u", password="p", timeout=25)
    with (
        serve(driver) as power,
        pytest.raises(
            PowerDeviceTimeout,
            match=rf"ipmi://127.0.0.1:{port}: chassis power on: no answer from the BMC$",
        ),
    ):
        power.on()


# Last: pyghmi keeps trying a login nobody answers for about 5 s on the driver's worker thread,
# and its session layer is process-wide.
def test_no_bmc_times_out_within_the_timeout() -> None:
    port = free_udp_port()
    driver = IpmiPower(host="127.0.0.1", port=port, user="u", password="p", timeout=1)
    with (
        serve(driver) as power,
        pytest.raises(
            PowerDeviceTimeout,
            match=rf"ipmi://127.0.0.1:{port}: no answer to power status within 1.0 s",
        ),
    ):
        power.status()
