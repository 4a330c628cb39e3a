"""The QEMU board end to end: a real VM (TCG) booted once for the module, driven by its client.

``make setup`` installs QEMU and builds the board's kernel and initramfs; these tests are not
skipped when they are missing: they fail and say what to run.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import tether
import tether.drivers.qemu
from tether.driver import DriverClient
from tether.drivers.power import PowerClient
from tether.drivers.qemu import Qemu, QemuError, default_assets_dir
from tether.drivers.serial import Console, SerialClient
from tether.drivers.storage import StorageModeError, StorageMuxClient
from tether.errors import ConfigError, DriverError
from tether.exporter import parse_config, run_exporter_in_thread
from tether.testing import serve

PROMPT = "tether-qemu# "
BOOT_LIMIT = 60.0
DISK_MIB = 4
MARKER = b"TETHER-DISK-MARKER-0123456789abcdef"


@dataclass
class Board:
    client: DriverClient
    console: Console
    boot_seconds: float
    image: bytes


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Board]:
    """One boot for the whole module: flash a marker image, open the console, power on."""
    image = MARKER + bytes(4096 - len(MARKER))
    path = tmp_path_factory.mktemp("qemu") / "marker.img"
    path.write_bytes(image)
    with serve(Qemu(disk_mib=DISK_MIB, hostfwd={"ssh": 22, "echo": 7})) as client:
        client.disk.host()
        client.disk.write(path, progress=False)
        client.disk.dut()
        with client.console.open() as console:
            start = time.perf_counter()
            client.power.on()
            console.expect(PROMPT, timeout=BOOT_LIMIT)
            yield Board(client, console, time.perf_counter() - start, image)
            client.power.off()


def test_children_have_the_lab_interfaces(board: Board) -> None:
    client = board.client
    assert set(client.children) == {"power", "console", "disk", "ssh", "echo"}
    assert isinstance(client.power, PowerClient)
    assert isinstance(client.console, SerialClient)
    assert isinstance(client.disk, StorageMuxClient)
    assert client.console.settings().baudrate == 115200


def test_boots_to_a_prompt_within_a_minute(board: Board, record_property: object) -> None:
    record_property("boot_seconds", round(board.boot_seconds, 2))  # type: ignore[operator]
    print(f"QEMU board booted to its prompt in {board.boot_seconds:.1f} s")
    assert board.boot_seconds < BOOT_LIMIT
    assert board.client.power.status() is True


def test_runs_a_command_on_the_console(board: Board) -> None:
    board.console.sendline("echo marker-$((6 * 7))")
    board.console.expect("marker-42", timeout=20)
    board.console.expect(PROMPT, timeout=20)


def test_a_second_console_sees_the_same_output(board: Board) -> None:
    with board.client.console.open(read_only=True) as second:
        board.console.sendline("echo both-$((2 + 2))")
        second.expect("both-4", timeout=20)
        board.console.expect("both-4", timeout=20)
        board.console.expect(PROMPT, timeout=20)


def test_the_flashed_disk_is_the_guest_vda(board: Board) -> None:
    board.console.sendline(f"head -c {len(MARKER)} /dev/vda; echo")
    board.console.expect(MARKER, timeout=20)
    board.console.expect(PROMPT, timeout=20)
    # The disk is the 4 KiB image grown (sparse) to DISK_MIB.
    disk = board.image + bytes((DISK_MIB << 20) - len(board.image))
    expected = hashlib.sha256(disk).hexdigest()
    board.console.sendline("sha256sum /dev/vda")
    board.console.expect(f"{expected}  /dev/vda", timeout=30)


def test_the_disk_cannot_go_to_the_host_while_the_board_runs(board: Board) -> None:
    with pytest.raises(StorageModeError, match="power it off first"):
        board.client.disk.host()
    assert board.client.disk.status() == "dut"


def test_network_forward_reaches_a_guest_port(board: Board) -> None:
    echo = board.client.echo
    assert echo.address().startswith("127.0.0.1:")
    with echo.connect() as stream:
        stream.send(b"hello guest\n")
        received = b""
        while not received.endswith(b"\n"):
            chunk = stream.receive()
            assert chunk, f"the guest closed the connection after {received!r}"
            received += chunk
    assert received == b"hello guest\n"


def test_an_exporter_config_builds_the_board_without_booting_it() -> None:
    config = parse_config(
        "name: vlab\nexport:\n  board:\n    type: tether.drivers.qemu.Qemu\n"
        "    config: {memory: 128, hostfwd: {ssh: 22}}\n",
        "vlab.yaml",
    )
    with run_exporter_in_thread(config) as running, tether.connect(running.url) as lab:
        assert set(lab.board.children) == {"power", "console", "disk", "ssh"}
        assert lab.board.power.status() is False
        assert lab.board.disk.status() == "dut"
        with pytest.raises(DriverError, match="the board is off"):
            lab.board.ssh.address()


def test_public_names() -> None:
    assert sorted(tether.drivers.qemu.__all__) == [
        "Qemu",
        "QemuConsole",
        "QemuDisk",
        "QemuError",
        "QemuNetwork",
        "QemuPower",
        "default_assets_dir",
    ]
    for name in tether.drivers.qemu.__all__:
        assert hasattr(tether.drivers.qemu, name)


def test_missing_boot_files_fail_the_start_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Qemu\.kernel: .*nope does not exist .*make setup"):
        asyncio.run(Qemu(kernel=str(tmp_path / "nope")).start())


def test_qemu_that_exits_at_once_reports_its_stderr() -> None:
    assert (default_assets_dir() / "vmlinuz").is_file(), "run `make setup` first"
    with serve(Qemu(extra_args=["-no-such-option"], hostfwd={})) as client:
        with pytest.raises(DriverError, match=r"QEMU exited: .*no-such-option") as failure:
            client.power.on()
        assert failure.value.remote_type.endswith(QemuError.__name__)
        assert client.power.status() is False
        with pytest.raises(DriverError, match=r"QEMU exited: .*no-such-option"):
            client.power.on()  # a dead process is cleaned up and started afresh


def test_a_taken_forward_port_is_replaced_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import tether.drivers.qemu._vm as vm

    taken = socket.create_server(("127.0.0.1", 0))
    ports = iter([taken.getsockname()[1]])
    fresh = vm._free_port
    monkeypatch.setattr(vm, "_free_port", lambda: next(ports, None) or fresh())
    with taken, serve(Qemu(hostfwd={"ssh": 22})) as client:
        client.power.on()
        assert client.ssh.address() != f"127.0.0.1:{taken.getsockname()[1]}"
        assert client.power.status() is True
        client.power.off()
        assert client.power.status() is False
