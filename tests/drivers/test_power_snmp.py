"""SnmpPower against net-snmp's snmpd, with net-snmp's snmpget/snmpset as the independent client.

snmpd runs in the foreground on 127.0.0.1 with its own config (``power_peers.run_snmpd``); the
outlet tables are ``snmp_outlets.py`` behind ``pass_persist``. SNMP itself (v2c communities,
v3 USM with SHA/AES, error statuses, silence for a wrong community) is snmpd's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from power_peers import (
    APC_BASE,
    COMMUNITY,
    GENERIC_BASE,
    RARITAN_BASE,
    RO_COMMUNITY,
    V3_AUTH,
    V3_PRIV,
    V3_USER,
    Snmpd,
    free_udp_port,
    run_snmpd,
    snmpget,
    snmpset,
)

import tether
from tether.drivers.power import (
    PowerClient,
    PowerDeviceAuthError,
    PowerDeviceRefused,
    PowerDeviceTimeout,
    SnmpPower,
)
from tether.errors import ConfigError
from tether.exporter import init_lab_certs, parse_config, run_exporter_in_thread
from tether.testing import DriverTestConfig, ForegroundDriverTest, serve


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snmpd]:
    with run_snmpd(tmp_path_factory.mktemp("snmpd")) as running:
        yield running


def v2c(agent: Snmpd, **config: Any) -> SnmpPower:
    config.setdefault("community", COMMUNITY)
    return SnmpPower(host="127.0.0.1", port=agent.port, **config)


def v3(agent: Snmpd, **config: Any) -> SnmpPower:
    return SnmpPower(
        host="127.0.0.1",
        port=agent.port,
        snmp_version="3",
        user=V3_USER,
        auth_protocol="sha",
        auth_key=V3_AUTH,
        priv_protocol="aes",
        priv_key=V3_PRIV,
        **config,
    )


# -- profiles, v2c and v3 ---------------------------------------------------------------------


def test_apc_outlet_over_v2c(agent: Snmpd) -> None:
    with serve(v2c(agent, outlet=1, profile="apc")) as power:
        assert isinstance(power, PowerClient)
        power.off()
        assert snmpget(agent, f"{APC_BASE}.1") == 2  # outletOff, as net-snmp's snmpget sees it
        assert power.status() is False
        power.on()
        assert snmpget(agent, f"{APC_BASE}.1") == 1  # outletOn
        snmpset(agent, f"{APC_BASE}.1", 2)  # someone else switches it off
        assert power.status() is False
        power.cycle(0)
        assert power.status() is True and snmpget(agent, f"{APC_BASE}.1") == 1


def test_raritan_outlet_over_v3_auth_priv(agent: Snmpd) -> None:
    with serve(v3(agent, outlet=4, profile="raritan")) as power:
        power.on()
        assert snmpget(agent, f"{RARITAN_BASE}.3.1.4", version="3") == 7  # on
        assert power.status() is True
        power.off()
        assert snmpget(agent, f"{RARITAN_BASE}.3.1.4") == 8  # off
        assert power.status() is False


def test_generic_profile_from_config(agent: Snmpd) -> None:
    oids = {"control": f"{GENERIC_BASE}.1.{{outlet}}", "on": 1, "off": 0}
    with serve(v2c(agent, outlet=6, profile="generic", oids=oids)) as power:
        power.on()
        assert snmpget(agent, f"{GENERIC_BASE}.1.6") == 1
        assert power.status() is True
        power.off()
        assert snmpget(agent, f"{GENERIC_BASE}.1.6") == 0
        assert power.status() is False


# -- bad input --------------------------------------------------------------------------------


def test_an_error_status_names_the_outlet_and_the_status(agent: Snmpd) -> None:
    with (
        serve(v2c(agent, outlet=8)) as power,  # APC outlet 8 is read-only in this agent
        pytest.raises(PowerDeviceRefused) as caught,
    ):
        power.on()
    message = str(caught.value)
    assert f"snmp://127.0.0.1:{agent.port} outlet 8" in message and "notWritable" in message
    assert COMMUNITY not in message


def test_a_value_the_agent_refuses(agent: Snmpd) -> None:
    oids = {"control": f"{APC_BASE}.{{outlet}}", "on": 7, "off": 2}
    with (
        serve(v2c(agent, outlet=2, profile="generic", oids=oids)) as power,
        pytest.raises(PowerDeviceRefused, match=r"set 7 .*wrongValue"),
    ):
        power.on()


def test_an_unknown_state_is_reported(agent: Snmpd) -> None:
    oids = {"control": f"{APC_BASE}.{{outlet}}", "on": 1, "off": 2, "status_on": [5]}
    snmpset(agent, f"{APC_BASE}.3", 1)
    with (
        serve(v2c(agent, outlet=3, profile="generic", oids=oids)) as power,
        pytest.raises(PowerDeviceRefused, match=r"state 1 is neither on \(\[5\]\)"),
    ):
        power.status()


def test_a_missing_object(agent: Snmpd) -> None:
    oids = {"control": "1.3.6.1.4.1.99998.1.{outlet}"}
    with (
        serve(v2c(agent, outlet=1, profile="generic", oids=oids)) as power,
        pytest.raises(PowerDeviceRefused, match="no such object"),
    ):
        power.status()


def test_a_read_only_community_is_an_auth_error(agent: Snmpd) -> None:
    with (
        serve(v2c(agent, outlet=1, community=RO_COMMUNITY)) as power,
        pytest.raises(PowerDeviceAuthError, match="noAccess") as caught,
    ):
        power.on()
    assert RO_COMMUNITY not in str(caught.value)


def test_a_wrong_community_times_out_within_the_timeout(
    agent: Snmpd, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with (
        serve(v2c(agent, outlet=1, community="not-the-secret", timeout=1)) as power,
        pytest.raises(PowerDeviceTimeout, match=r"within 1\.0 s") as caught,
    ):
        power.on()
    assert "wrong community" in str(caught.value)
    assert "not-the-secret" not in str(caught.value) and "not-the-secret" not in caplog.text


def test_wrong_v3_keys_are_an_auth_error(agent: Snmpd, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bad = SnmpPower(
        host="127.0.0.1",
        port=agent.port,
        outlet=1,
        snmp_version=3,
        user=V3_USER,
        auth_key="wrong-auth-key-1",
        priv_key=V3_PRIV,
        timeout=5,
    )
    with (
        serve(bad) as power,
        pytest.raises(PowerDeviceAuthError, match=f"refused user '{V3_USER}'") as caught,
    ):
        power.on()
    for secret in ("wrong-auth-key-1", V3_PRIV):
        assert secret not in str(caught.value) and secret not in caplog.text


def test_nobody_listening_times_out() -> None:
    port = free_udp_port()
    with (
        serve(SnmpPower(host="127.0.0.1", port=port, outlet=1, timeout=0.5)) as power,
        pytest.raises(PowerDeviceTimeout, match=rf"snmp://127.0.0.1:{port} outlet 1"),
    ):
        power.status()


def test_config_is_checked() -> None:
    with pytest.raises(ConfigError, match="generic` needs `oids"):
        SnmpPower(host="h", outlet=1, profile="generic")
    with pytest.raises(ConfigError, match="needs `user`"):
        SnmpPower(host="h", outlet=1, snmp_version="3")
    with pytest.raises(ConfigError, match="auth_key"):
        SnmpPower(host="h", outlet=1, snmp_version="3", user="u")
    with pytest.raises(ConfigError, match="numeric OID"):
        SnmpPower(host="h", outlet=1, profile="generic", oids={"control": "PowerNet-MIB::x"})
    power = SnmpPower(host="h", outlet=1, community="s3cr3t-community")
    assert "s3cr3t-community" not in repr(power.community)


# -- the test kit: virtual time ---------------------------------------------------------------


class KitSnmpPower(SnmpPower):
    """The driver with its SNMP requests replaced: records sets with the virtual time, or
    hangs (an agent that never answers, without pysnmp's own timer)."""

    hang: ClassVar[bool] = False
    sets: ClassVar[list[tuple[float, bool]]] = []

    async def _switch(self, on: bool) -> None:
        if self.hang:
            await asyncio.Event().wait()
        self.sets.append((asyncio.get_running_loop().time(), on))

    async def _query(self) -> bool:
        return bool(self.sets and self.sets[-1][1])


def test_cycle_in_virtual_time() -> None:
    KitSnmpPower.sets = []
    config = DriverTestConfig(KitSnmpPower, driver_config={"host": "pdu", "outlet": 2})
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        start = test.runtime.now()
        test.runtime.run_to_completion(test.driver.cycle(5))
        assert [(round(t - start, 3), on) for t, on in KitSnmpPower.sets] == [(0, False), (5, True)]


def test_timeout_in_virtual_time() -> None:
    class Hung(KitSnmpPower):
        hang: ClassVar[bool] = True

    config = DriverTestConfig(Hung, driver_config={"host": "pdu", "outlet": 2, "timeout": 20})
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        start = test.runtime.now()
        with pytest.raises(
            PowerDeviceTimeout,
            match=r"snmp://pdu:161 outlet 2: no answer to power off within 20.0 s",
        ):
            test.runtime.run_to_completion(test.driver.off())
        assert test.runtime.now() - start == pytest.approx(20)


# -- end to end: a TLS exporter, snmpd behind it ----------------------------------------------


def test_through_a_tls_exporter(
    agent: Snmpd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    certs = init_lab_certs(tmp_path / "certs")
    config = parse_config(
        f"""\
name: pdu-lab
tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}
export:
  apc:
    type: tether.drivers.power.SnmpPower
    config: {{host: 127.0.0.1, port: {agent.port}, outlet: 5, community: {COMMUNITY}}}
  raritan:
    type: tether.drivers.power.SnmpPower
    config:
      host: 127.0.0.1
      port: {agent.port}
      outlet: 5
      profile: raritan
      snmp_version: 3
      user: {V3_USER}
      auth_protocol: sha
      auth_key: {V3_AUTH}
      priv_protocol: aes
      priv_key: {V3_PRIV}
  locked:
    type: tether.drivers.power.SnmpPower
    config: {{host: 127.0.0.1, port: {agent.port}, outlet: 8, community: {COMMUNITY}}}
""",
        "pdu-lab.yaml",
    )
    caplog.set_level(logging.DEBUG)
    with (
        run_exporter_in_thread(config, listen="tls://127.0.0.1:0") as running,
        tether.connect(running.url, running.token, ca=certs.ca) as dut,
    ):
        assert isinstance(dut.apc, PowerClient)
        dut.apc.on()
        assert snmpget(agent, f"{APC_BASE}.5") == 1 and dut.apc.status() is True
        dut.raritan.on()
        assert snmpget(agent, f"{RARITAN_BASE}.3.1.5") == 7
        with pytest.raises(PowerDeviceRefused, match="notWritable"):
            dut.locked.on()
        dut.apc.off()  # the exporter keeps serving after the error
        assert snmpget(agent, f"{APC_BASE}.5") == 2
        dut.raritan.cycle(0)
        assert dut.raritan.status() is True
    for secret in (COMMUNITY, V3_AUTH, V3_PRIV):
        assert secret not in caplog.text
