"""UBoot against real U-Boot (Debian's u-boot-qemu, 32-bit build) on the QEMU board."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import tether
from tether.drivers.uboot import UBootClient
from tether.errors import DriverError, InvalidArgument
from tether.exporter import parse_config, run_exporter_in_thread

pytestmark = pytest.mark.timeout(300)

LAB = """
name: uboot-lab
export:
  board:
    type: tether.drivers.qemu.Qemu
    config: {firmware: u-boot, hostfwd: {}}
  uboot:
    type: tether.drivers.uboot.UBoot
    uses: {console: board.console}
    config:
      boot_commands:
        - qfw load 02000000 08000000
        - setenv bootargs console=ttyS0 quiet tether.boot=qfw
        - zboot 02000000 0 08000000 ${filesize}
  deaf:
    type: tether.drivers.uboot.UBoot
    uses: {console: board.console}
    config: {prompt: 'never> ', autoboot: 'never shown'}
  shell:
    type: tether.drivers.console.ConsoleShell
    uses: {console: board.console}
    config: {prompt: 'tether-qemu# '}
  raw:
    type: tether.drivers.console.ConsoleShell
    uses: {console: board.console}
    config: {prompt: 'tether-qemu# ', drop_kernel_messages: false}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Any]:
    with (
        run_exporter_in_thread(parse_config(LAB, "uboot-lab.yaml")) as running,
        tether.connect(running.url) as client,
    ):
        client.board.power.on()
        client.uboot.interrupt(timeout=120)
        yield client
        client.board.power.off()


def test_commands_and_their_status(lab: Any) -> None:
    uboot = lab.uboot
    assert isinstance(uboot, UBootClient)
    result = uboot.run("version")
    assert result.status == 0 and result.output.startswith("U-Boot 20")
    assert uboot.run("false").status == 1
    assert uboot.run("nosuchcommand").status != 0
    uboot.interrupt(timeout=60)  # already at the prompt: found again, nothing lost
    assert uboot.run("echo still here").output == "still here"


def test_environment(lab: Any) -> None:
    uboot = lab.uboot
    assert uboot.getenv("tether_probe") is None
    uboot.setenv("tether_probe", "a b=c")
    assert uboot.getenv("tether_probe") == "a b=c"
    assert uboot.run("echo ${tether_probe}").output == "a b=c"
    with pytest.raises((DriverError, InvalidArgument), match="invalid U-Boot variable name"):
        uboot.getenv("bad name; reset")


def test_a_command_that_times_out(lab: Any) -> None:
    with pytest.raises(DriverError, match="did not finish within 1 s"):
        lab.uboot.run("sleep 20", timeout=1)
    assert lab.uboot.run("echo ok").output == "ok"


def test_u_boot_that_never_answers_is_a_timeout_not_a_hang(lab: Any) -> None:
    with pytest.raises(DriverError, match=r"neither the autoboot line .* nor the prompt"):
        lab.deaf.interrupt(timeout=3)
    assert lab.uboot.run("echo served").output == "served"  # the exporter keeps serving


def test_boot_reaches_the_linux_shell(lab: Any) -> None:
    lab.uboot.boot(timeout=120)
    result = lab.shell.run("cat /proc/cmdline", timeout=120)
    assert result.status == 0 and "tether.boot=qfw" in result.output


def test_a_kernel_message_in_the_middle_of_the_output_is_left_out(lab: Any) -> None:
    # test_boot_reaches_the_linux_shell left the board at its shell. The kernel prints the
    # message on the console itself, between the two lines of the command's output.
    result = lab.shell.run("echo a; echo '<1>tether kmsg probe' > /dev/kmsg; echo b")
    assert (result.output, result.status) == ("a\nb", 0)
    assert lab.shell.run("dmesg | grep -c 'tether kmsg probe'").output == "1"  # it was printed
    assert "] tether kmsg probe" in lab.raw.run("dmesg | tail -n 3").output  # kept when asked
