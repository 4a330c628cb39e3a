"""The DUT network with real U-Boot: a namespace, a bridge, the board's tap, tether's TFTP
server on the bridge, and QEMU running Debian's u-boot-qemu (32-bit qemu-x86) on the tap.

Needs root (namespaces, taps); like the other namespace tests these fail, never skip, when it
is missing. U-Boot's console is driven with a small expect loop over QEMU's stdio.
"""

from __future__ import annotations

import ctypes
import os
import re
import select
import signal
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from tether.drivers.netboot import NetworkNamespace
from tether.drivers.qemu import default_assets_dir
from tether.exporter import parse_config, run_exporter_in_thread

UBOOT = "/usr/lib/u-boot/qemu-x86/u-boot.rom"
LAB = """\
name: netboot-lab
export:
  net: {type: tether.drivers.netboot.DutNetwork}
  tftp: {type: tether.drivers.netboot.TftpServer, uses: {network: net}}
"""


def die_with_parent() -> None:
    """QEMU goes when the test run does, even when it is killed."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Console:
    """Just enough expect over a process's stdout."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.buffer = b""

    def expect(self, pattern: bytes, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while True:
            match = re.search(pattern, self.buffer)
            if match:
                before, self.buffer = self.buffer[: match.end()], self.buffer[match.end() :]
                return before
            left = deadline - time.monotonic()
            if left <= 0 or self.process.poll() is not None:
                raise AssertionError(f"no {pattern!r} on the console; last: {self.buffer[-800:]!r}")
            ready, _, _ = select.select([self.process.stdout], [], [], min(left, 1.0))
            if ready:
                self.buffer += os.read(self.process.stdout.fileno(), 65536)

    def run(self, command: str, timeout: float = 30.0) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        return self.expect(rb"\n=> ", timeout).decode(errors="replace")


@pytest.fixture
def lab() -> Iterator[Any]:
    with (
        run_exporter_in_thread(parse_config(LAB, "netboot-lab.yaml")) as running,
        tether.connect(running.url, running.token) as dut,
    ):
        yield dut


@pytest.fixture
def uboot(lab: Any) -> Iterator[Console]:
    """U-Boot at its prompt, on a tap of the lab's DUT network, its addresses set."""
    namespace = NetworkNamespace(lab.net.namespace())
    fd = namespace.open_tap(lab.net.add_tap())
    process = subprocess.Popen(
        [
            "qemu-system-x86_64",
            "-bios",
            UBOOT,
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-monitor",
            "none",
            "-m",
            "512",
            "-netdev",
            f"tap,id=n0,fd={fd}",
            "-device",
            "e1000,netdev=n0",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        pass_fds=[fd],
        preexec_fn=die_with_parent,
    )
    os.close(fd)
    namespace.close()
    console = Console(process)
    try:
        console.expect(rb"Hit any key to stop autoboot")
        console.run("")
        console.run(f"setenv ipaddr {lab.net.board_address()}")
        console.run(f"setenv serverip {lab.net.server_address()}")
        console.run(f"setenv netmask {lab.net.netmask()}")
        yield console
    finally:
        process.kill()
        process.wait()


def test_every_lab_gets_its_own_network() -> None:
    with (
        run_exporter_in_thread(parse_config(LAB, "a.yaml")) as one,
        run_exporter_in_thread(parse_config(LAB, "b.yaml")) as two,
        tether.connect(one.url, one.token) as a,
        tether.connect(two.url, two.token) as b,
    ):
        names = a.net.namespace(), b.net.namespace()
        assert names[0] != names[1]
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert all(name in listed for name in names)
        assert a.tftp.address() == b.tftp.address() == "192.168.77.1:69"  # each in its own
        bridge = subprocess.run(
            ["ip", "-n", names[0], "-br", "addr", "show", "br0"], capture_output=True, text=True
        ).stdout
        assert "192.168.77.1/24" in bridge
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(name in listed for name in names)  # removed with the session


def test_uboot_fetches_a_file_from_tethers_tftp_server(lab: Any, uboot: Console) -> None:
    data = os.urandom(300_000)
    lab.tftp.put_bytes("payload.bin", data)
    out = uboot.run("tftpboot 0x01000000 payload.bin")
    assert f"Bytes transferred = {len(data)}" in out, out
    crc = uboot.run("crc32 0x01000000 ${filesize}")
    assert f"==> {zlib.crc32(data):08x}" in crc, crc
    missing = uboot.run("tftpboot 0x01000000 nothing.bin")
    assert "TFTP error: 'file not found: nothing.bin' (1)" in missing
    outside = uboot.run("tftpboot 0x01000000 ../etc/passwd")
    assert "TFTP error: 'access denied" in outside
    again = uboot.run("tftpboot 0x01000000 payload.bin")  # the server kept serving
    assert f"Bytes transferred = {len(data)}" in again


def test_uboot_netboots_the_kernel_to_a_shell(lab: Any, uboot: Console) -> None:
    assets = default_assets_dir()
    lab.tftp.put(assets / "vmlinuz")
    lab.tftp.put(assets / "initramfs.cpio.gz")
    assert "Bytes transferred" in uboot.run("tftpboot 0x01000000 vmlinuz", 60)
    # The initramfs goes high: the kernel's decompression would overwrite it below.
    assert "Bytes transferred" in uboot.run("tftpboot 0x10000000 initramfs.cpio.gz", 60)
    uboot.run("setenv bootargs console=ttyS0 tether.boot=tftp panic=-1")
    assert uboot.process.stdin is not None
    uboot.process.stdin.write(b"zboot 0x01000000 - 0x10000000 ${filesize}\n")
    uboot.process.stdin.flush()
    uboot.expect(rb"tether-qemu# ", 90)
    uboot.process.stdin.write(b"cat /proc/cmdline\n")
    uboot.process.stdin.flush()
    assert b"tether.boot=tftp" in uboot.expect(rb"tether\.boot=tftp[^\n]*\n", 20)


def test_the_qemu_board_attaches_its_nic_to_the_tap(tmp_path: Path) -> None:
    config = (
        LAB
        + "  board: {type: tether.drivers.qemu.Qemu, config: {nic: dut}, uses: {network: net}}\n"
    )
    with (
        run_exporter_in_thread(parse_config(config, "board.yaml")) as running,
        tether.connect(running.url, running.token) as dut,
    ):
        namespace = dut.net.namespace()
        assert "network" not in dut.board.children  # no hostfwd without the user network
        dut.board.power.on()
        link = subprocess.run(
            ["ip", "-n", namespace, "link", "show", "tap0"], capture_output=True, text=True
        ).stdout
        assert "master br0" in link and "LOWER_UP" in link  # QEMU holds the tap
        dut.board.power.off()


def test_http_server_listens_inside_the_network() -> None:
    config = LAB + "  http: {type: tether.drivers.netboot.HttpServer, uses: {network: net}}\n"
    with (
        run_exporter_in_thread(parse_config(config, "http.yaml")) as running,
        tether.connect(running.url, running.token) as dut,
    ):
        dut.http.put_bytes("grub.cfg", b"menuentry tether {}\n")
        assert dut.http.address() == "http://192.168.77.1:80/"
        inside = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                dut.net.namespace(),
                "curl",
                "-sS",
                "--max-time",
                "10",
                "http://192.168.77.1/grub.cfg",
            ],
            capture_output=True,
            timeout=30,
        )
        assert inside.stdout == b"menuentry tether {}\n"
        outside = subprocess.run(
            ["curl", "-sS", "--noproxy", "*", "--max-time", "2", "http://192.168.77.1/grub.cfg"],
            capture_output=True,
            timeout=30,
        )
        assert outside.stdout != inside.stdout  # not from the host's own network


def test_an_uplink_wires_a_host_interface_to_the_boards() -> None:
    """A real lab's bench NIC, played by one end of a veth pair; the other end is the board."""
    suffix = f"{os.getpid() % 10000}{os.urandom(1).hex()}"
    host_end, board_end = f"tu{suffix}", f"tb{suffix}"
    board_ns = f"tether-board-{suffix}"
    subprocess.run(["ip", "netns", "add", board_ns], check=True)
    try:
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                host_end,
                "type",
                "veth",
                "peer",
                "name",
                board_end,
                "netns",
                board_ns,
            ],
            check=True,
        )
        third = 100 + os.getpid() % 100
        config = (
            "name: uplink-lab\nexport:\n"
            f"  net: {{type: tether.drivers.netboot.DutNetwork, config: {{subnet: 10.231.{third}.0/24, uplink: {host_end}}}}}\n"
            "  tftp: {type: tether.drivers.netboot.TftpServer, uses: {network: net}}\n"
        )
        with (
            run_exporter_in_thread(parse_config(config, "uplink.yaml")) as running,
            tether.connect(running.url, running.token) as dut,
        ):
            dut.tftp.put_bytes("pxelinux.0", b"\x7fELF-ish boot loader")
            board = dut.net.board_address()
            for command in (
                ["addr", "add", f"{board}/24", "dev", board_end],
                ["link", "set", board_end, "up"],
            ):
                subprocess.run(["ip", "-n", board_ns, *command], check=True)
            got = subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    board_ns,
                    "curl",
                    "-sS",
                    "--max-time",
                    "20",
                    f"tftp://{dut.net.server_address()}/pxelinux.0",
                ],
                capture_output=True,
                timeout=30,
            )
            assert got.stdout == b"\x7fELF-ish boot loader", got.stderr
        links = subprocess.run(["ip", "link", "show", host_end], capture_output=True, text=True)
        assert links.returncode == 0  # the uplink is back on the host after the session
    finally:
        subprocess.run(["ip", "link", "del", host_end], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", board_ns], check=False)
