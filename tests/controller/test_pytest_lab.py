"""The ``tether-lab`` pytest plugin against a real controller and real agent exporters:
``--tether-role`` gives ``lab``; ``--tether-record DIR`` records each test, and the recording
replays with the exporters gone."""

from __future__ import annotations

from pathlib import Path

import pytest

from relaylab import run_agent_exporter
from tether.controller.testing import run_controller
from tether.testing import load_recording, replay

pytest_plugins = ["pytester"]

EXPORT = """
export:
  power: {type: tether.drivers.power.MockPower}
  shell:
    type: tether.drivers.shell.Shell
    config: {commands: {greet: "echo hello from $0"}}
"""

TESTS = """
def test_power(dut):
    dut.power.on()
    assert dut.power.status() is True
    assert dut.shell.run("greet").stdout.startswith(b"hello from")

def test_roles(lab):
    lab.dut.power.on()
    assert lab.host.power.status() is False
    assert lab.dut.power.status() is True

def test_untouched():
    pass
"""


def test_roles_fixture_and_recording_replayed_without_the_exporters(
    tmp_path: Path, pytester: pytest.Pytester
) -> None:
    records = tmp_path / "records"
    with run_controller(tmp_path / "controller", relay=True) as ctl:
        board = ctl.admin.create_exporter("board-1", labels={"board": "rpi4"})
        host = ctl.admin.create_exporter("host-1", labels={"kind": "x86"})
        alice = ctl.admin.create_client("alice")
        with run_agent_exporter(board.config + EXPORT), run_agent_exporter(host.config + EXPORT):
            pytester.makepyfile(test_board=TESTS)
            base = [f"--tether-controller={ctl.url}", f"--tether-token={alice.token}",
                    f"--tether-ca={ctl.ca}", "-p", "no:cacheprovider"]  # fmt: skip
            # dut and lab would both want board-1: two sessions, one after the other
            first = pytester.runpytest_subprocess(
                *base, "--tether-selector=board=rpi4", f"--tether-record={records}",
                "-k", "power or untouched",
            )  # fmt: skip
            first.assert_outcomes(passed=2)
            second = pytester.runpytest_subprocess(
                *base, "--tether-role=dut=board=rpi4", "--tether-role=host=kind=x86",
                f"--tether-record={records}", "-k", "roles",
            )  # fmt: skip
            second.assert_outcomes(passed=1)
    # controller and exporters are gone; the recordings answer alone
    files = sorted(p.name for p in records.iterdir())
    assert files == ["test_board.py_test_power.jsonl", "test_board.py_test_roles.jsonl"]
    with replay(records / "test_board.py_test_power.jsonl") as dut:
        dut.power.on()
        assert dut.power.status() is True
        assert dut.shell.run("greet").stdout.startswith(b"hello from")
    with replay(records / "test_board.py_test_roles.jsonl") as lab:
        lab.dut.power.on()
        assert lab.host.power.status() is False
        assert lab.dut.power.status() is True
    header, reports, _ = load_recording(records / "test_board.py_test_roles.jsonl")
    assert header["test"] == "test_board.py::test_roles" and list(reports) == ["dut", "host"]


def test_lab_without_roles_says_what_to_pass(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_board=TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "roles")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*the lab fixture needs roles: run pytest with --tether-role*"])
