"""Board tests as you would write them for your own lab: copy this file and adapt it.

The ``dut`` fixture (tether's pytest plugin) leases a device matching ``--tether-selector``
once for the session and releases it at the end:

    TETHER_CONFIG=client.yaml pytest examples/test_board.py --tether-selector board=demo

(``python examples/demo.py --serve`` starts a lab that prints its TETHER_CONFIG.) The board
here is the demo's: ``board.power``, ``board.console`` and ``board.disk``, either the QEMU
board or the simulated one. See docs/demo.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from tether.drivers.serial import Console
from tether.drivers.storage import StorageModeError

LOGIN_OR_PROMPT = re.compile(rb"login: |[\w@:~-]+# ")
PROMPT = re.compile(rb"[\w@:~-]+# ")
MARKER = "TETHER-EXAMPLE-IMAGE 1"
BOOT_TIMEOUT = 120


def run(console: Console, command: str, timeout: float = 30) -> str:
    """Run ``command`` at the board's shell; its output (without the echoed command)."""
    console.sendline(command)
    match = console.expect(PROMPT, timeout=timeout)
    output = match.string[: match.start()].decode(errors="replace").replace("\r", "")
    return "\n".join(output.split("\n")[1:]).strip()


@pytest.fixture(scope="module")
def shell(dut: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    """Flash a small image, boot the board, log in; the console of a booted board."""
    board = dut.board
    workdir = tmp_path_factory.mktemp("board")
    image = workdir / "example.img"
    image.write_bytes(MARKER.encode() + b"\n" + bytes(1 << 20))
    board.power.off()
    board.disk.host()
    board.disk.write(image, progress=False)
    board.disk.dut()
    with board.console.open(log_file=workdir / "console.log") as console:  # log: keep it
        board.power.on()
        if console.expect(LOGIN_OR_PROMPT, timeout=BOOT_TIMEOUT).group(0) == b"login: ":
            console.sendline("root")
            console.expect(PROMPT, timeout=30)
        yield console
    board.power.off()


def test_the_board_is_powered(dut: Any, shell: Console) -> None:
    assert dut.board.power.status() is True


def test_it_runs_linux(shell: Console) -> None:
    assert run(shell, "uname -s") == "Linux"


def test_the_shell_answers(shell: Console) -> None:
    assert run(shell, "echo hello from tether") == "hello from tether"


def test_the_flashed_image_is_the_boards_disk(shell: Console) -> None:
    assert run(shell, "head -n 1 /dev/vda") == MARKER


def test_the_disk_stays_with_the_board_while_it_runs(dut: Any, shell: Console) -> None:
    with pytest.raises(StorageModeError, match="power it off first"):
        dut.board.disk.host()
    assert dut.board.disk.status() == "dut"


def test_the_supply_reads_a_voltage(dut: Any, shell: Console) -> None:
    samples = list(dut.board.power.read())
    assert samples and samples[0].voltage > 0
