"""TftpServer against real TFTP clients: curl's tftp:// and tftp-hpa's tftp (real sockets)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _tftp_loops import LOOPS

from tether.drivers.netboot import TftpServer
from tether.errors import DriverError
from tether.testing import serve

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("tftp") is None,
    reason="needs curl and tftp-hpa",
)


ROOTS: dict[int, str] = {}


@pytest.fixture(params=LOOPS)
def tftp(request: pytest.FixtureRequest) -> Iterator[Any]:
    driver = TftpServer(host="127.0.0.1", port=0, timeout=1.0, transfer_loop=request.param)
    with serve(driver) as client:
        ROOTS[id(client)] = driver.store.root
        yield client


def port_of(client: Any) -> str:
    return client.address().rsplit(":", 1)[1]


def curl(port: str, name: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            *extra,
            "-o",
            str(out),
            f"tftp://127.0.0.1:{port}/{name}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def hpa(port: str, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["tftp", "-m", "binary", "127.0.0.1", port, "-c", *command],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize("blksize", [None, "1468", "65464"])
def test_curl_fetches_what_was_put(tftp: Any, tmp_path: Path, blksize: str | None) -> None:
    data = os.urandom(700_000)
    result = tftp.put_bytes("boot/kernel.img", data)
    assert result["bytes"] == len(data)
    extra = ["--tftp-blksize", blksize] if blksize else []
    done = curl(port_of(tftp), "boot/kernel.img", tmp_path / "out", *extra)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").read_bytes() == data


@pytest.mark.parametrize("loop", LOOPS[:2])  # the loops that match ACKs themselves
def test_block_numbers_roll_over_for_a_real_client(loop: str, tmp_path: Path) -> None:
    data = os.urandom(8 * 65_600)  # 65,601 blocks of 8 bytes: past block number 65,535
    with serve(TftpServer(host="127.0.0.1", port=0, transfer_loop=loop)) as tftp:
        tftp.put_bytes("big.img", data)
        done = curl(port_of(tftp), "big.img", tmp_path / "out", "--tftp-blksize", "8")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out").read_bytes() == data


def test_tftp_hpa_fetches_a_block_multiple(tftp: Any, tmp_path: Path) -> None:
    data = os.urandom(512 * 300)  # ends with an empty block
    tftp.put_bytes("x.bin", data)
    done = hpa(port_of(tftp), "get", "x.bin", str(tmp_path / "x.bin"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "x.bin").read_bytes() == data


def test_missing_file_is_a_tftp_error(tftp: Any, tmp_path: Path) -> None:
    done = curl(port_of(tftp), "nothing-here", tmp_path / "out")
    assert done.returncode == 68  # curl: "TFTP: File Not Found"
    done = hpa(port_of(tftp), "get", "nothing-here", str(tmp_path / "n"))
    assert "not found" in (done.stdout + done.stderr).lower()


def test_paths_outside_the_root_are_refused(tftp: Any, tmp_path: Path) -> None:
    driver_root = Path(tftp_root(tftp))
    (driver_root / "escape").symlink_to("/etc/passwd")
    for name in ("../../../../etc/passwd", "/etc/passwd", "escape"):
        done = hpa(port_of(tftp), "get", name, str(tmp_path / "p"))
        said = (done.stdout + done.stderr).lower()
        assert "access" in said, (name, said)
        assert not (tmp_path / "p").exists() or (tmp_path / "p").stat().st_size == 0
    tftp.put_bytes("ok", b"fine")
    assert hpa(port_of(tftp), "get", "ok", str(tmp_path / "ok")).returncode == 0
    assert (tmp_path / "ok").read_bytes() == b"fine"


def test_writes_are_refused(tftp: Any, tmp_path: Path) -> None:
    (tmp_path / "up").write_bytes(b"data")
    done = hpa(port_of(tftp), "put", str(tmp_path / "up"), "up")
    assert "read-only" in (done.stdout + done.stderr)
    assert tftp.list() == []


def test_put_list_remove_and_bad_names(tftp: Any) -> None:
    tftp.put_bytes("a", b"1")
    tftp.put_bytes("dir/b", b"2")
    assert tftp.list() == ["a", "dir/b"]
    tftp.remove("a")
    assert tftp.list() == ["dir/b"]
    with pytest.raises(DriverError, match="no file 'a'"):
        tftp.remove("a")
    with pytest.raises(DriverError, match="leave the served directory"):
        tftp.put_bytes("../x", b"3")


def test_files_are_removed_when_the_session_ends() -> None:
    driver = TftpServer(host="127.0.0.1", port=0)
    with serve(driver) as client:
        client.put_bytes("f", b"x")
        root = driver.store.root
        assert os.path.isfile(os.path.join(root, "f"))
    assert not os.path.exists(root)


def test_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        with serve(TftpServer(host="127.0.0.1", port=0, directory=str(small))) as client:
            with pytest.raises(DriverError, match="disk is full"):
                client.put_bytes("big", b"\0" * (3 << 20))
            assert client.list() == []
            client.put_bytes("small", b"ok")
            done = hpa(port_of(client), "get", "small", str(tmp_path / "s"))
            assert done.returncode == 0 and (tmp_path / "s").read_bytes() == b"ok"
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_put_from_a_file_and_the_dut_command(tftp: Any, tmp_path: Path) -> None:
    source = tmp_path / "initrd.img"
    source.write_bytes(b"\x1f\x8b" + os.urandom(5000))
    assert tftp.put(source)["name"] == "initrd.img"
    from tether.cli.dut import run

    assert run(tftp, ["put", str(source), "renamed"]) == 0
    assert tftp.list() == ["initrd.img", "renamed"]


def tftp_root(client: Any) -> str:
    """The session directory (the driver is local under serve())."""
    return ROOTS[id(client)]


@pytest.mark.parametrize("loop", LOOPS)
def test_unanswered_blocks_are_sent_again_then_given_up(loop: str) -> None:
    import socket

    from tether.drivers.netboot._tftp_packets import ReadRequest, encode

    driver = TftpServer(host="127.0.0.1", port=0, timeout=0.2, retries=2, transfer_loop=loop)
    with serve(driver) as client, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        client.put_bytes("f", b"z" * 100)
        sock.settimeout(10)
        sock.sendto(encode(ReadRequest("f")), ("127.0.0.1", int(port_of(client))))
        first, server = sock.recvfrom(2048)
        assert first == b"\x00\x03\x00\x01" + b"z" * 100
        assert sock.recv(2048) == first  # no ACK: the block comes again
        assert sock.recv(2048) == first
        error = sock.recv(2048)
        assert error.startswith(b"\x00\x05") and b"retries" in error  # then it gives up
        sock.sendto(encode(ReadRequest("f")), ("127.0.0.1", int(port_of(client))))
        data, server = sock.recvfrom(2048)  # the server still serves
        sock.sendto(b"\x00\x04\x00\x01", server)
        assert data == first
