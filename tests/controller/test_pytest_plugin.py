"""The ``tether-lease`` pytest plugin: ``--tether-selector`` leases once per session for the
``dut`` fixture, records the lease in the JUnit report and releases it, also after Ctrl-C."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaylab import AgentExporter
from tether.controller.testing import ControllerHandle, IssuedIdentity, run_controller

# pytester restores sys.modules after each test: the controller fixtures come first in each
# signature so what they import (cryptography's bindings) stays imported.
pytest_plugins = ["pytester"]


TESTS = """
def test_power_on(dut):
    dut.power.on()
    assert dut.power.status() is True

def test_same_lease_for_the_whole_session(dut):
    assert dut.power.status() is True  # the previous test's power-on is still there
"""


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[ControllerHandle]:
    with run_controller(tmp_path / "controller", relay=True) as ctl:
        yield ctl


@pytest.fixture
def alice(ctl: ControllerHandle) -> IssuedIdentity:
    return ctl.admin.create_client("alice")


def options(ctl: ControllerHandle, alice: IssuedIdentity, *more: str) -> list[str]:
    return [
        f"--tether-controller={ctl.url}",
        f"--tether-token={alice.token}",
        f"--tether-ca={ctl.ca}",
        "-p",
        "no:cacheprovider",
        *more,
    ]


def all_leases(ctl: ControllerHandle, alice: IssuedIdentity) -> list[tuple[str, str]]:
    with ctl.http(alice.token) as http:
        leases = http.get("/v1/leases?all=true").json()["leases"]
    return [(lease["id"], lease["state"]) for lease in leases]


def test_one_lease_per_session_recorded_in_junit_and_released(
    ctl: ControllerHandle, bench: AgentExporter, alice: IssuedIdentity, pytester: pytest.Pytester
) -> None:
    pytester.makepyfile(test_board=TESTS)
    report = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        *options(ctl, alice, "--tether-selector=board=rpi4", f"--junitxml={report}")
    )
    result.assert_outcomes(passed=2)
    [(lease_id, state)] = all_leases(ctl, alice)
    assert state == "ended"
    properties = {prop.get("name"): prop.get("value") for prop in ET.parse(report).iter("property")}
    assert properties == {"tether_lease": lease_id, "tether_exporter": "bench-1"}
    result.stdout.fnmatch_lines([f"tether: lease {lease_id} on bench-1"])


def test_ctrl_c_releases_the_lease(
    ctl: ControllerHandle, bench: AgentExporter, alice: IssuedIdentity, pytester: pytest.Pytester
) -> None:
    pytester.makepyfile(
        test_interrupted="""
        def test_interrupted(dut):
            dut.power.on()
            raise KeyboardInterrupt
        """
    )
    result = pytester.runpytest_subprocess(*options(ctl, alice, "--tether-selector=board=rpi4"))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    [(_, state)] = all_leases(ctl, alice)
    assert state == "ended"


def test_without_junitxml_the_lease_still_works(
    ctl: ControllerHandle, bench: AgentExporter, alice: IssuedIdentity, pytester: pytest.Pytester
) -> None:
    pytester.makepyfile(test_board=TESTS)
    result = pytester.runpytest_subprocess(
        *options(ctl, alice, "--tether-selector=board=rpi4", "-p", "no:junitxml")
    )
    result.assert_outcomes(passed=2)
    assert [state for _, state in all_leases(ctl, alice)] == ["ended"]


def test_dut_without_a_selector_says_what_to_pass(
    ctl: ControllerHandle, alice: IssuedIdentity, pytester: pytest.Pytester
) -> None:
    pytester.makepyfile(test_board=TESTS)
    result = pytester.runpytest_subprocess(*options(ctl, alice))
    assert result.ret != 0
    result.stderr.fnmatch_lines(  # one usage error for the run (not one per test)
        ["*the dut fixture needs a device: run pytest with --tether-selector*"]
    )
    assert all_leases(ctl, alice) == []
