"""Boot the U-Boot board from off to its Linux shell, then run commands there.

    pytest examples/test_netboot.py --tether-exporter-config examples/lab-uboot.yaml

(or inside ``tether shell --exporter-config examples/lab-uboot.yaml``, or against a lab
with ``--tether-connect URL`` or ``--tether-selector board=uboot-demo``). See docs/boot.md.
"""

from __future__ import annotations

from typing import Any

import pytest

BOOT = "tether.boot="


@pytest.fixture(scope="module")
def booted(dut: Any) -> Any:
    """The board at its Linux shell (powered on and booted through U-Boot when it was off)."""
    dut.boot.transition("shell")
    return dut


def test_the_board_reached_its_shell(booted: Any) -> None:
    assert booted.boot.state() == "shell"
    result = booted.shell.run("uname -sm")
    assert (result.output, result.status) == ("Linux x86_64", 0)


def test_the_kernel_was_loaded_by_u_boot(booted: Any) -> None:
    cmdline = booted.shell.run("cat /proc/cmdline").output
    assert BOOT in cmdline, cmdline


def test_a_failing_command_reports_its_status(booted: Any) -> None:
    assert booted.shell.run("ls /nonexistent").status != 0


def test_transition_is_idempotent(booted: Any) -> None:
    before = booted.shell.run("cat /proc/uptime").output
    booted.boot.transition("shell")  # already there: no power cycle
    after = booted.shell.run("cat /proc/uptime").output
    assert float(after.split()[0]) >= float(before.split()[0])
