"""Netboot the U-Boot board from off to its Linux shell, then run commands there.

    pytest examples/test_netboot.py --tether-exporter-config examples/lab-uboot.yaml

(or inside ``tether shell --exporter-config examples/lab-uboot.yaml``, or against a lab
with ``--tether-connect URL`` or ``--tether-selector board=uboot-demo``). With a ``tftp``
node the kernel and initramfs are put there first and U-Boot fetches them (``tftpboot``);
``examples/lab-uboot-qfw.yaml`` boots without a network. See docs/boot.md.
"""

from __future__ import annotations

from typing import Any

import pytest

from tether.drivers.qemu import default_assets_dir


@pytest.fixture(scope="module")
def booted(dut: Any) -> Any:
    """The board at its Linux shell (powered on and booted through U-Boot when it was off)."""
    if "tftp" in dut.children:
        for name in ("vmlinuz", "initramfs.cpio.gz"):
            dut.tftp.put(default_assets_dir() / name)
    dut.boot.transition("shell")
    return dut


def test_the_board_reached_its_shell(booted: Any) -> None:
    assert booted.boot.state() == "shell"
    result = booted.shell.run("uname -sm")
    assert (result.output, result.status) == ("Linux x86_64", 0)


def test_the_kernel_came_the_way_the_lab_says(booted: Any) -> None:
    cmdline = booted.shell.run("cat /proc/cmdline").output
    way = "tftp" if "tftp" in booted.children else "qfw"
    assert f"tether.boot={way}" in cmdline.split(), cmdline


def test_a_failing_command_reports_its_status(booted: Any) -> None:
    assert booted.shell.run("ls /nonexistent").status != 0


def test_transition_is_idempotent(booted: Any) -> None:
    before = booted.shell.run("cat /proc/uptime").output
    booted.boot.transition("shell")  # already there: no power cycle
    after = booted.shell.run("cat /proc/uptime").output
    assert float(after.split()[0]) >= float(before.split()[0])
