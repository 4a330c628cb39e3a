"""The simulated board: its console logic sans-IO, then the drivers over a real pty and the wire."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
import tether.drivers.simboard
from tether.drivers.power import PowerClient
from tether.drivers.serial import Console, SerialClient
from tether.drivers.simboard import BoardShell, ShellState, SimBoard, SimBoardError, SimPower
from tether.drivers.simboard._firmware import BOOT_LOG, KERNEL_RELEASE, boot_banner
from tether.drivers.storage import StorageModeError, StorageMuxClient
from tether.errors import ConfigError, DriverError
from tether.exporter import build_tree, parse_config, run_exporter_in_thread
from tether.testing import serve

GUARD = 10.0  # a wait that only fails a broken test, never paces a passing one
PROMPT = "root@simboard:~# "


def logged_in(disk: str | None = None) -> BoardShell:
    shell = BoardShell(disk=disk, clock=lambda: 100.0)
    shell.booted()
    shell.feed(b"root\r")
    assert shell.state is ShellState.SHELL
    return shell


def command(shell: BoardShell, line: str) -> str:
    """The output of ``line`` (after its echo, before the next prompt)."""
    out = shell.feed(line.encode() + b"\r").decode()
    echo, _, rest = out.partition("\r\n")
    assert echo == line
    assert rest.endswith(PROMPT)
    return rest[: -len(PROMPT)]


# -- BoardShell: bytes in, bytes out -----------------------------------------------------------


def test_boot_ends_at_a_login_prompt_and_any_user_logs_in() -> None:
    shell = BoardShell()
    assert shell.feed(b"root\r") == b""  # nothing listens while it boots
    assert shell.booted().endswith(b"simboard login: ")
    assert shell.feed(b"\r") == b"\r\nsimboard login: "  # an empty name asks again
    assert shell.feed(b"alice\r") == b"alice\r\nLast login: on ttyS0\r\n" + PROMPT.encode()


def test_typed_bytes_are_echoed_and_edited_like_a_tty() -> None:
    shell = logged_in()
    assert shell.feed(b"ech") == b"ech"
    assert shell.feed(b"x\x7f") == b"x\b \b"
    assert shell.feed(b"o hi\r\n") == b"o hi\r\nhi\r\n" + PROMPT.encode()  # \r\n: one line
    assert shell.feed(b"junk\x03") == b"junk^C\r\n" + PROMPT.encode()
    assert shell.feed(b"\x7f") == b""  # nothing left to erase


def test_bytes_one_at_a_time_give_the_same_output_as_all_at_once() -> None:
    typed = b"uname -a\r\necho a b\rhostname\nuptime\r"
    whole = logged_in().feed(typed)
    single = logged_in()
    assert b"".join(single.feed(bytes((byte,))) for byte in typed) == whole


def test_commands() -> None:
    shell = logged_in()
    assert command(shell, "uname -a") == (
        f"Linux simboard {KERNEL_RELEASE} #1 SMP PREEMPT tether simulated board x86_64 "
        "GNU/Linux\r\n"
    )
    assert command(shell, "uname -r") == f"{KERNEL_RELEASE}\r\n"
    assert command(shell, "cat /proc/version").startswith(f"Linux version {KERNEL_RELEASE}")
    assert command(shell, "echo 'two words' x") == "two words x\r\n"
    assert command(shell, "uptime").startswith("up 0 s")
    assert command(shell, "reboot-now") == "-sh: reboot-now: not found\r\n"
    assert command(shell, "echo 'open") == "-sh: syntax error: No closing quotation\r\n"
    assert command(shell, "") == ""
    assert "head -n N" in command(shell, "help")


def test_the_disk_is_dev_vda(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"IMAGE-HEADER 7\nsecond line\n" + bytes(4096))
    shell = logged_in(str(disk))
    assert command(shell, "head -n 1 /dev/vda") == "IMAGE-HEADER 7\r\n"
    assert command(shell, "head -c 5 /dev/vda") == "IMAGE\r\n"
    expected = hashlib.sha256(disk.read_bytes()).hexdigest()
    assert command(shell, "sha256sum /dev/vda") == f"{expected}  /dev/vda\r\n"
    assert command(shell, "head -n 1 /dev/sda") == ("head: /dev/sda: No such file or directory\r\n")
    assert command(logged_in(None), "head -n 1 /dev/vda") == "head: /dev/vda: No such device\r\n"


def test_the_boot_log_names_what_is_on_the_disk(tmp_path: Path) -> None:
    disk = tmp_path / "disk.img"
    disk.write_bytes(bytes(512))
    assert "blank disk" in boot_banner(str(disk))
    disk.write_bytes(b"my-os 1.2\n" + bytes(512))
    assert boot_banner(str(disk)) == "/dev/vda: my-os 1.2"
    assert "no disk attached" in boot_banner(None)
    assert "cannot read" in boot_banner(str(tmp_path / "missing.img"))
    assert BoardShell(disk=str(disk)).boot_lines() == [
        *BOOT_LOG[:4],
        "/dev/vda: my-os 1.2",
        *BOOT_LOG[4:],
    ]


def test_exit_logs_out_and_poweroff_halts() -> None:
    shell = logged_in()
    assert shell.feed(b"exit\r").endswith(b"simboard login: ")
    assert shell.state is ShellState.LOGIN
    shell.feed(b"root\r")
    assert shell.feed(b"\x04") == b"logout\r\n\r\nsimboard login: "  # Ctrl-D on an empty line
    shell.feed(b"root\r")
    assert shell.feed(b"poweroff\rignored\r") == b"poweroff\r\nreboot: Power down\r\n"
    assert shell.halted
    assert shell.feed(b"echo x\r") == b""


# -- the drivers: a real pty read by PySerial, over the wire ------------------------------------


@pytest.fixture
def board() -> Iterator[tuple[SimBoard, tether.DriverClient]]:
    driver = SimBoard(boot_seconds=0)
    with serve(driver) as client:
        yield driver, client


def boot(client: tether.DriverClient, console: Console) -> str:
    """Power on and log in; returns the boot log."""
    client.power.on()
    log = console.expect("simboard login: ", timeout=GUARD).string.decode()
    console.sendline("root")
    console.expect(PROMPT, timeout=GUARD)
    return log


def test_children_have_the_lab_interfaces(board: tuple[SimBoard, tether.DriverClient]) -> None:
    _, client = board
    assert set(client.children) == {"power", "console", "disk"}
    assert isinstance(client.power, PowerClient)
    assert isinstance(client.console, SerialClient)
    assert isinstance(client.disk, StorageMuxClient)
    assert re.fullmatch(r"/dev/pts/\d+", client.console.settings().url)


def test_flash_boot_log_in_and_run_a_command(
    board: tuple[SimBoard, tether.DriverClient], tmp_path: Path
) -> None:
    _, client = board
    image = tmp_path / "image.img"
    image.write_bytes(b"demo-os 3.1\n" + bytes(8192))
    assert client.disk.status() == "dut"
    client.disk.host()
    client.disk.write(image, progress=False)
    with client.console.open() as console:
        log = boot(client, console)  # power-on takes the disk from the host
        assert "U-Boot" in log and "/dev/vda: demo-os 3.1" in log
        assert client.power.status() is True
        assert client.disk.status() == "dut"
        console.sendline("head -n 1 /dev/vda")
        console.expect("demo-os 3.1\r\n" + PROMPT, timeout=GUARD)
        console.sendline("uname -n")
        console.expect("simboard\r\n" + PROMPT, timeout=GUARD)
    assert [sample.voltage for sample in client.power.read()] == [5.0]
    client.power.off()
    assert client.power.status() is False
    assert [sample.voltage for sample in client.power.read()] == [0.0]


def test_the_disk_stays_with_the_board_while_it_runs(
    board: tuple[SimBoard, tether.DriverClient],
) -> None:
    _, client = board
    client.power.on()
    with pytest.raises(StorageModeError, match="power it off first"):
        client.disk.host()
    client.power.off()
    client.disk.host()
    assert client.disk.status() == "host"


def test_poweroff_in_the_shell_turns_the_power_off(
    board: tuple[SimBoard, tether.DriverClient],
) -> None:
    driver, client = board
    with client.console.open() as console:
        boot(client, console)
        console.sendline("poweroff")
        console.expect("reboot: Power down", timeout=GUARD)
    # The firmware ends as it prints this (its task wakes before the pty is read on the
    # exporter's loop), so the next call sees the board off, as QEMU's -no-reboot would.
    assert client.power.status() is False
    assert not driver.running


def test_what_is_typed_while_the_board_is_off_is_lost(
    board: tuple[SimBoard, tether.DriverClient],
) -> None:
    _, client = board
    with client.console.open() as console:
        console.sendline("root")  # nobody reads the UART yet
        client.power.on()
        console.expect("simboard login: ", timeout=GUARD)
        console.sendline("")
        assert console.expect(re.compile(rb"login: |# "), timeout=GUARD).group(0) == b"login: "


def test_power_cycles_keep_the_console(board: tuple[SimBoard, tether.DriverClient]) -> None:
    _, client = board
    with client.console.open() as console:
        boot(client, console)
        client.power.off()
        boot(client, console)  # the same stream sees the second boot


def test_stop_closes_the_pty() -> None:
    driver = SimBoard(boot_seconds=0)
    with serve(driver) as client:
        client.power.on()
        master = driver.master
        assert master is not None
        os.fstat(master)
    assert driver.master is None
    assert not driver.running
    with pytest.raises(OSError):
        os.fstat(master)


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="makes its own children"):
        SimBoard(children={"power": SimPower()})
    with pytest.raises(ConfigError, match=r"boot_seconds: -1\.0 is negative"):
        SimBoard(boot_seconds=-1)


def test_a_child_alone_says_it_needs_the_board() -> None:
    with serve(SimPower()) as power, pytest.raises(DriverError, match="only as a child"):
        power.on()
    assert issubclass(SimBoardError, tether.errors.TetherError)


def test_an_exporter_config_builds_the_board_without_opening_a_pty() -> None:
    config = parse_config(
        "name: sim\nexport:\n  board:\n    type: tether.drivers.simboard.SimBoard\n"
        "    config: {boot_seconds: 0}\n",
        "sim.yaml",
    )
    root, _ = build_tree(config)  # what the agent does to describe the exporter
    described = root.children["board"]
    assert isinstance(described, SimBoard) and described.master is None
    with run_exporter_in_thread(config) as running, tether.connect(running.url) as lab:
        assert set(lab.board.children) == {"power", "console", "disk"}
        assert lab.board.power.status() is False
        with lab.board.console.open() as console:
            lab.board.power.on()
            console.expect("simboard login: ", timeout=GUARD)


def test_public_names() -> None:
    assert sorted(tether.drivers.simboard.__all__) == [
        "BoardShell",
        "ShellState",
        "SimBoard",
        "SimBoardError",
        "SimConsole",
        "SimDisk",
        "SimPower",
    ]
