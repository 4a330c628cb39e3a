"""``Ssh`` against a real OpenSSH sshd on loopback (its own keys and config, started here).

Each test drives the driver through ``serve()`` (the real wire protocol, in-process); the TLS
exporter and the ``dut`` commands are in ``test_ssh_cli.py``, the pure parts and virtual-time
tests in ``test_ssh_units.py``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.drivers.ssh import (
    FrameKind,
    ShellChannel,
    Ssh,
    SshAuthFailed,
    SshClient,
    SshCommandTimeout,
    SshForwardRefused,
    SshHostKeyRefused,
    SshTransferFailed,
    SshUnreachable,
)
from tether.drivers.ssh.testing import Sshd, free_port, keygen, run_sshd
from tether.testing import serve


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with run_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def dut(sshd: Sshd) -> Iterator[SshClient]:
    with serve(Ssh(**sshd.driver_config())) as client:
        assert isinstance(client, SshClient)
        yield client


def read_until(channel: ShellChannel, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        frame = channel.next_frame()
        assert frame is not None and frame.kind is not FrameKind.EXIT, f"ended; saw {seen!r}"
        seen += frame.data
    return seen


# -- commands ---------------------------------------------------------------------------------


def test_run_returns_output_and_status(dut: SshClient) -> None:
    result = dut.run("echo out; echo err >&2; exit 3")
    assert result.status == 3 and not result.ok
    assert result.output.splitlines() == ["out", "err"]
    assert dut.run("uname -s").output == "Linux\n"


def test_a_command_killed_by_a_signal_reports_128_plus_n(dut: SshClient) -> None:
    assert dut.run("kill -9 $$").status == 128 + signal.SIGKILL


def test_run_stream_yields_chunks_then_the_status(dut: SshClient) -> None:
    items = list(dut.run_stream("for i in 1 2 3; do echo line$i; done; echo oops >&2; exit 4"))
    assert items[-1].kind == "exit" and items[-1].status == 4
    stdout = b"".join(i.data for i in items if i.kind == "stdout")
    stderr = b"".join(i.data for i in items if i.kind == "stderr")
    assert stdout == b"line1\nline2\nline3\n" and stderr == b"oops\n"


def test_long_output_streams_whole(dut: SshClient) -> None:
    items = list(dut.run_stream("head -c 3000000 /dev/zero | tr '\\0' x"))
    assert sum(len(i.data) for i in items if i.kind == "stdout") == 3_000_000
    assert items[-1].status == 0


def test_a_command_past_its_timeout_is_killed(dut: SshClient, sshd: Sshd) -> None:
    with pytest.raises(SshCommandTimeout) as caught:
        dut.run("echo started; exec sleep 6061", timeout=1)
    message = str(caught.value)
    assert "ssh " in message and f"{sshd.user}@127.0.0.1:{sshd.port}" in message
    assert "did not finish within 1 s" in message and "started" in message
    # The device killed it (SIGKILL through the channel), and the connection still serves.
    assert dut.run("pgrep -f 'sleep 606[1]' || echo none").output == "none\n"


def test_a_command_whose_reader_stops_early_is_killed_on_the_device(dut: SshClient) -> None:
    items = dut.run_stream("echo first; exec sleep 6062")
    assert next(items).data == b"first\n"
    items.close()  # the call is cancelled: the driver kills the command's process group
    for _ in range(50):  # each check is a round trip to the device, no sleep
        if dut.run("pgrep -f 'sleep 606[2]' || echo none").output == "none\n":
            break
    else:
        pytest.fail("the command still runs on the device")


def test_one_connection_per_session_and_a_reconnect_after_it_dropped(sshd: Sshd) -> None:
    driver = Ssh(**sshd.driver_config())
    with serve(driver) as dut:
        for _ in range(3):
            assert dut.run("true").ok
        assert driver.link.opened == 1
        for pid in sshd.children():  # cut this session's connection on the device's side
            os.kill(pid, signal.SIGKILL)
        assert dut.run("echo again").output == "again\n"
        assert driver.link.opened == 2
    assert not driver.link.connected  # closed when the session stopped


# -- files ------------------------------------------------------------------------------------


def test_put_and_get_a_file(dut: SshClient, tmp_path: Path) -> None:
    payload = os.urandom(5 * 1024 * 1024 + 123)
    local = tmp_path / "local.bin"
    local.write_bytes(payload)
    remote = tmp_path / "remote.bin"
    assert dut.put(local, str(remote), mode=0o640) == len(payload)
    assert remote.read_bytes() == payload and (remote.stat().st_mode & 0o777) == 0o640
    assert dut.get(str(remote)) == payload
    assert dut.get(str(remote), tmp_path / "back.bin") == len(payload)
    assert (tmp_path / "back.bin").read_bytes() == payload
    assert dut.put(b"", str(tmp_path / "empty")) == 0 and dut.get(str(tmp_path / "empty")) == b""


def test_transfer_errors_name_the_device_and_the_path(dut: SshClient, tmp_path: Path) -> None:
    with pytest.raises(SshTransferFailed, match=r"put /nonexistent-dir/x: .*No such file"):
        dut.put(b"data", "/nonexistent-dir/x")
    with pytest.raises(SshTransferFailed, match=r"ssh .* get /nonexistent-file: .*No such file"):
        dut.get("/nonexistent-file")
    assert dut.run("echo still here").output == "still here\n"


# -- forwards ---------------------------------------------------------------------------------


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data.upper())

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    thread.join(10)


def test_forward_reaches_a_port_on_the_device(dut: SshClient, echo_port: int) -> None:
    with dut.forward(echo_port, "127.0.0.1") as stream:
        stream.send(b"hello " * 20000)
        stream.send_eof()
        received = b""
        while chunk := stream.receive():
            received += chunk
    assert received == b"HELLO " * 20000


def test_forward_local_listens_like_ssh_l(dut: SshClient, echo_port: int) -> None:
    with (
        dut.forward_local(echo_port, "127.0.0.1") as fwd,
        socket.create_connection(("127.0.0.1", fwd.port)) as sock,
    ):
        sock.sendall(b"ping")
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b"PING"


def test_forward_to_a_closed_port_is_refused(dut: SshClient) -> None:
    refused = r"forward to 127\.0\.0\.1:\d+: the device refused"
    with pytest.raises(SshForwardRefused, match=refused), dut.forward(free_port(), "127.0.0.1"):
        pass


# -- the shell --------------------------------------------------------------------------------


def test_shell_with_a_pty_resizes_interrupts_and_exits_with_a_status(dut: SshClient) -> None:
    with dut.open_shell(cols=100, rows=30) as shell:
        shell.send(b"PS1='RE''ADY> '\n")  # a prompt to wait for (not in the echo)
        read_until(shell, b"READY> ")
        shell.send(b"stty size; tty\n")
        seen = read_until(shell, b"/dev/pts/")
        assert b"30 100" in seen
        shell.resize(120, 40)
        shell.send(b"stty size\n")
        assert b"40 120" in read_until(shell, b"40 120")
        # Ctrl-C is the pty's interrupt: it stops the foreground job, not the shell. "start"
        # comes from the job itself, so the job runs (and has the terminal) when ^C is sent.
        shell.send(b"sh -c 'echo start; exec sleep 600'\n")
        read_until(shell, b"start\r\n")
        shell.send(b"\x03")
        read_until(shell, b"READY> ")  # the shell is back (typeahead could be flushed)
        shell.send(b"echo status=$?\n")
        assert b"status=130" in read_until(shell, b"status=130")
        shell.send(b"exit 7\n")
        while shell.next_frame() is not None:
            pass
        assert shell.status == 7


def test_shell_without_a_pty_runs_a_script(dut: SshClient) -> None:
    with dut.open_shell(pty=False) as shell:
        shell.send(b"echo out-$((6 * 7)); echo err >&2; tty || true; exit 2\n")
        shell.send_eof()
        out, err = shell.read_all()
    assert out.splitlines() == [b"out-42", b"not a tty"] and err == b"err\n"
    assert shell.status == 2


# -- refusals ---------------------------------------------------------------------------------


def test_a_host_key_mismatch_is_refused_naming_both_fingerprints(
    sshd: Sshd, tmp_path: Path
) -> None:
    other = keygen(tmp_path / "other_host_key")
    presented = subprocess.run(
        ["ssh-keygen", "-lf", str(sshd.directory / "ssh_host_ed25519_key.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    expected = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "other_host_key.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    for pin in (other, expected):
        with serve(Ssh(**sshd.driver_config(host_key=pin))) as dut:
            with pytest.raises(SshHostKeyRefused) as caught:
                dut.run("true")
            message = str(caught.value)
            assert presented in message and expected in message and "host key refused" in message
    # The right fingerprint (not the whole key) is accepted.
    with serve(Ssh(**sshd.driver_config(host_key=presented))) as dut:
        assert dut.run("echo ok").output == "ok\n"


def test_wrong_credentials_fail_clearly_and_no_secret_is_shown(
    sshd: Sshd, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keygen(tmp_path / "stranger")
    secret = "s3cret-Pa55-XYZ"
    configs = [
        sshd.driver_config(key_file=str(tmp_path / "stranger")),
        {**sshd.driver_config(), "key_file": None, "password": secret},
    ]
    with caplog.at_level(logging.DEBUG):
        for config in configs:
            with serve(Ssh(**config)) as dut:
                with pytest.raises(SshAuthFailed, match=r"ssh .*: connecting: login refused"):
                    dut.run("true")
                assert dut.address() == f"{sshd.user}@127.0.0.1:{sshd.port}"  # still serving
    assert secret not in caplog.text


def test_a_missing_key_file_is_a_credentials_error(sshd: Sshd, tmp_path: Path) -> None:
    config = sshd.driver_config(key_file=str(tmp_path / "absent"))
    with serve(Ssh(**config)) as dut, pytest.raises(SshAuthFailed, match="absent: No such file"):
        dut.run("true")


def test_a_silent_device_fails_at_the_connect_timeout(sshd: Sshd) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never speaks SSH
    with (
        silent,
        serve(Ssh(**sshd.driver_config(port=silent.getsockname()[1], connect_timeout=1))) as dut,
    ):
        started = time.monotonic()
        with pytest.raises(SshUnreachable, match="no SSH session within 1 s"):
            dut.run("true")
        assert time.monotonic() - started >= 1  # not before the timeout (and not hung)
        assert dut.address().startswith(f"{sshd.user}@")


def test_connection_refused_is_unreachable_and_the_session_goes_on(sshd: Sshd) -> None:
    port = free_port()
    with serve(Ssh(**sshd.driver_config(port=port))) as dut:
        with pytest.raises(
            SshUnreachable, match=rf"127\.0\.0\.1:{port}\): connecting: Connection refused"
        ):
            dut.run("true")
        with pytest.raises(SshUnreachable):
            dut.run("true")
        assert dut.address().endswith(f":{port}")
