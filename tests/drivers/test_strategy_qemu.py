"""BootStrategy end to end on real U-Boot on the QEMU board: examples/lab-uboot-qfw.yaml
driven through ``dut``, and examples/lab-uboot.yaml (a netboot from tether's TFTP server on
the DUT network) through the example's own pytest file."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from lean_pytest import UNUSED_PLUGINS
from tether.cli.dut import run
from tether.exporter import run_exporter_in_thread

pytestmark = pytest.mark.timeout(400)

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "examples" / "lab-uboot-qfw.yaml"
NETBOOT_LAB = ROOT / "examples" / "lab-uboot.yaml"


@pytest.fixture(scope="module")
def lab() -> Iterator[Any]:
    with run_exporter_in_thread(LAB) as running, tether.connect(running.url) as client:
        yield client


def test_dut_transition_state_and_run(lab: Any, capfd: pytest.CaptureFixture[str]) -> None:
    assert run(lab, ["boot", "state"]) == 0
    assert capfd.readouterr().out == "off\n"
    assert run(lab, ["boot", "transition", "shell"]) == 0
    assert run(lab, ["boot", "state"]) == 0
    assert capfd.readouterr().out == "shell\n"
    assert run(lab, ["shell", "run", "grep -o tether.boot=[a-z]* /proc/cmdline"]) == 0
    assert capfd.readouterr().out.startswith("tether.boot=")
    assert run(lab, ["shell", "run", "(exit 3)"]) == 3


def test_from_the_shell_to_u_boot_and_back(lab: Any) -> None:
    lab.boot.transition("shell")
    lab.boot.transition("uboot")  # a power cycle, autoboot stopped
    assert lab.boot.state() == "uboot"
    assert lab.uboot.run("version").output.startswith("U-Boot")
    lab.boot.transition("shell")
    assert lab.shell.run("echo back").output == "back"


def test_a_state_that_does_not_exist(lab: Any, capfd: pytest.CaptureFixture[str]) -> None:
    assert run(lab, ["boot", "transition", "linux"]) == 1
    assert "no state 'linux'; the states are: off, uboot, shell" in capfd.readouterr().err
    assert lab.boot.states() == ["off", "uboot", "shell"]  # the exporter keeps serving


def test_the_example_pytest_file_netboots_the_lab(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            *UNUSED_PLUGINS,
            str(ROOT / "examples" / "test_netboot.py"),
            f"--tether-exporter-config={NETBOOT_LAB}",
            f"--tether-console-dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
