"""The ``tether-lab`` pytest plugin against a real controller and real agent exporters:
``--tether-role`` gives ``lab``; ``--tether-record DIR`` records each test, and the recording
replays with the exporters gone."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relaylab import run_agent_exporter
from tether.controller.testing import ControllerHandle, run_controller
from tether.testing import load_recording, replay

pytest_plugins = ["pytester"]

EXPORT = """
export:
  power: {type: tether.drivers.power.MockPower}
  shell:
    type: tether.drivers.shell.Shell
    config: {commands: {greet: "echo hello from $0"}}
"""

DUT_TESTS = """
def test_power(dut):
    dut.power.on()
    assert dut.power.status() is True
    assert dut.shell.run("greet").stdout.startswith(b"hello from")

def test_untouched():
    pass
"""

# A run whose tests use dut needs a device for it (tether-lease checks at collection).
LAB_TESTS = """
def test_roles(lab):
    lab.dut.power.on()
    assert lab.host.power.status() is False
    assert lab.dut.power.status() is True
"""


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[ControllerHandle]:
    # pytester restores sys.modules after each test: the controller comes first in each
    # signature so what it imports (cryptography's bindings) stays imported.
    with run_controller(tmp_path / "controller", relay=True) as ctl:
        yield ctl


def options(ctl: ControllerHandle, records: Path) -> list[str]:
    alice = ctl.admin.create_client("alice")
    return [f"--tether-controller={ctl.url}", f"--tether-token={alice.token}",
            f"--tether-ca={ctl.ca}", "-p", "no:cacheprovider", f"--tether-record={records}"]  # fmt: skip


def test_dut_recorded_then_replayed_without_the_exporter(
    ctl: ControllerHandle, pytester: pytest.Pytester, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    board = ctl.admin.create_exporter("board-1", labels={"board": "rpi4"})
    with run_agent_exporter(board.config + EXPORT):
        pytester.makepyfile(test_board=DUT_TESTS)
        result = pytester.runpytest_subprocess(
            *options(ctl, records), "--tether-selector=board=rpi4"
        )
        result.assert_outcomes(passed=2)
    # the exporter is gone; the recording answers alone (a test without dut has none)
    assert [p.name for p in records.iterdir()] == ["test_board.py_test_power.jsonl"]
    with replay(records / "test_board.py_test_power.jsonl") as dut:
        dut.power.on()
        assert dut.power.status() is True
        assert dut.shell.run("greet").stdout.startswith(b"hello from")


def test_lab_with_roles_recorded_then_replayed_without_the_exporters(
    ctl: ControllerHandle, pytester: pytest.Pytester, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    board = ctl.admin.create_exporter("board-1", labels={"board": "rpi4"})
    host = ctl.admin.create_exporter("host-1", labels={"kind": "x86"})
    with run_agent_exporter(board.config + EXPORT), run_agent_exporter(host.config + EXPORT):
        pytester.makepyfile(test_board=LAB_TESTS)
        result = pytester.runpytest_subprocess(
            *options(ctl, records), "--tether-role=dut=board=rpi4", "--tether-role=host=kind=x86"
        )
        result.assert_outcomes(passed=1)
    path = records / "test_board.py_test_roles.jsonl"
    with replay(path) as lab:
        lab.dut.power.on()
        assert lab.host.power.status() is False
        assert lab.dut.power.status() is True
    header, reports, _ = load_recording(path)
    assert header["test"] == "test_board.py::test_roles" and list(reports) == ["dut", "host"]


def test_lab_without_roles_says_what_to_pass(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_board=LAB_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*the lab fixture needs roles: run pytest with --tether-role*"])
