"""``Ssh`` through a TLS exporter process (YAML config, bearer token, lab CA) to a real sshd,
from Python and from ``dut`` processes: ``run``, ``put``, ``get`` and ``shell`` in a real pty."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from tether.drivers.ssh import SshClient, SshHostKeyRefused
from tether.drivers.ssh.testing import Sshd, keygen, run_sshd
from tether.exporter import generate_token, hash_token, init_lab_certs

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sshd, dict[str, str]]]:
    """sshd, and an exporter process (TLS, a bearer token) with two SSH nodes: ``dut`` (the
    right host key) and ``wrong`` (another one)."""
    work = tmp_path_factory.mktemp("ssh-lab")
    with run_sshd(work / "sshd") as sshd:
        certs = init_lab_certs(work / "certs")
        token = generate_token()
        wrong_key = keygen(work / "wrong_host_key")
        config = work / "lab.yaml"
        config.write_text(
            f"""
name: ssh-lab
tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}
tokens: [{hash_token(token)}]
export:
  dut:
    type: tether.drivers.ssh.Ssh
    config:
      host: 127.0.0.1
      port: {sshd.port}
      user: {sshd.user}
      key_file: {sshd.client_key}
      host_key: "{sshd.host_key}"
  wrong:
    type: tether.drivers.ssh.Ssh
    config: {{host: 127.0.0.1, port: {sshd.port}, password: wr0ng-Pa55word, host_key: "{wrong_key}"}}
"""
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        log = (work / "exporter.log").open("wb")
        exporter = subprocess.Popen(
            [str(BIN / "tether"), "exporter", "serve", str(config), "--listen", "tls://127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL, env=env, text=True,
        )  # fmt: skip
        try:
            assert exporter.stdout is not None
            url = ""
            for line in exporter.stdout:
                if line.startswith("listening on "):
                    url = line.removeprefix("listening on ").strip()
                if line.strip() == "ready":
                    break
            assert url, (work / "exporter.log").read_text()
            env.update(TETHER_HOST=url, TETHER_TOKEN=token, TETHER_CA=str(certs.ca))
            yield sshd, env
            assert exporter.poll() is None  # every error above left it serving
        finally:
            exporter.terminate()
            exporter.wait(30)
            if exporter.stdout is not None:
                exporter.stdout.close()
            log.close()
        logged = (work / "exporter.log").read_text()
        assert "wr0ng-Pa55word" not in logged  # the password is never logged


def dut(env: dict[str, str], *args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(BIN / "dut"), *args], capture_output=True, env=env, timeout=60, **kwargs
    )  # type: ignore[call-overload, no-any-return]


def test_python_client_through_tls(lab: tuple[Sshd, dict[str, str]], tmp_path: Path) -> None:
    _, env = lab
    with tether.connect(env["TETHER_HOST"], env["TETHER_TOKEN"], ca=env["TETHER_CA"]) as root:
        assert isinstance(root.dut, SshClient)
        assert root.dut.run("echo $((40 + 2))").output == "42\n"
        payload = os.urandom(2 * 1024 * 1024)
        assert root.dut.put(payload, str(tmp_path / "up.bin")) == len(payload)
        assert root.dut.get(str(tmp_path / "up.bin")) == payload
        with pytest.raises(SshHostKeyRefused, match=r"ssh wrong .*host key refused"):
            root.wrong.run("true")
        assert root.dut.run("true").ok  # the exporter and the session keep serving


def test_dut_run_prints_the_output_and_exits_with_the_status(
    lab: tuple[Sshd, dict[str, str]],
) -> None:
    _, env = lab
    done = dut(env, "dut", "run", "echo hello; echo oops >&2; exit 3")
    assert done.returncode == 3
    assert done.stdout == b"hello\n" and done.stderr == b"oops\n"
    assert dut(env, "dut", "run", "true").returncode == 0
    words = dut(env, "dut", "run", "--timeout", "20", "uname", "-s")  # options after the command
    assert words.returncode == 0 and words.stdout == b"Linux\n"
    refused = dut(env, "wrong", "run", "true")
    assert refused.returncode == 1 and b"host key refused" in refused.stderr
    assert b"Traceback" not in refused.stderr


def test_dut_put_and_get(lab: tuple[Sshd, dict[str, str]], tmp_path: Path) -> None:
    _, env = lab
    local = tmp_path / "image.bin"
    local.write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    remote = tmp_path / "on-the-device.bin"
    put = dut(env, "dut", "put", str(local), str(remote))
    assert put.returncode == 0, put.stderr
    assert remote.read_bytes() == local.read_bytes()
    back = tmp_path / "back.bin"
    got = dut(env, "dut", "get", str(remote), str(back))
    assert got.returncode == 0 and back.read_bytes() == local.read_bytes()
    piped = dut(env, "dut", "get", str(remote), "-")
    assert piped.stdout == local.read_bytes()
    missing = dut(env, "dut", "get", "/nonexistent-file", str(back))
    assert missing.returncode == 1 and b"No such file" in missing.stderr


def test_dut_shell_without_a_terminal_runs_stdin(lab: tuple[Sshd, dict[str, str]]) -> None:
    _, env = lab
    done = dut(env, "dut", "shell", input=b"echo piped-$((2 * 21))\nexit 4\n")
    assert done.returncode == 4 and done.stdout == b"piped-42\n"


def set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def read_until(fd: int, marker: bytes, limit: float = 30.0) -> bytes:
    """Read the pty until ``marker``; ``limit`` seconds is only a safety net."""
    data = b""
    while marker not in data:
        ready, _, _ = select.select([fd], [], [], limit)
        assert ready, f"no {marker!r} within {limit} s; got {data!r}"
        chunk = os.read(fd, 4096)
        assert chunk, f"EOF before {marker!r}; got {data!r}"
        data += chunk
    return data


def _controlling_tty() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_dut_shell_in_a_pty(lab: tuple[Sshd, dict[str, str]]) -> None:
    _, env = lab
    leader, follower = pty.openpty()
    set_size(follower, 30, 100)
    process = subprocess.Popen(
        [str(BIN / "dut"), "dut", "shell"],
        stdin=follower, stdout=follower, stderr=follower,
        env={**env, "TERM": "xterm"}, preexec_fn=_controlling_tty,
    )  # fmt: skip
    os.close(follower)
    try:
        read_until(leader, b"Ctrl-] leaves")
        assert not termios.tcgetattr(leader)[3] & (termios.ICANON | termios.ECHO)  # raw here
        os.write(leader, b"PS1='RE''ADY> '\r")  # a prompt to wait for (not in the echo)
        read_until(leader, b"READY> ")
        os.write(leader, b"stty size\r")
        read_until(leader, b"30 100")
        set_size(leader, 40, 120)  # the kernel sends dut SIGWINCH; dut sends a RESIZE frame
        os.write(leader, b"stty size\r")
        read_until(leader, b"40 120")
        os.write(leader, b"sh -c 'echo start; exec sleep 600'\r")
        read_until(leader, b"start\r\n")
        os.write(leader, b"\x03")  # Ctrl-C: the device's pty interrupts sleep, not dut
        read_until(leader, b"READY> ")  # the shell is back (typeahead could be flushed)
        os.write(leader, b"echo status=$?\r")
        read_until(leader, b"status=130")
        os.write(leader, b"exit 5\r")
        assert process.wait(timeout=30) == 5
        assert termios.tcgetattr(leader)[3] & termios.ICANON  # restored at exit
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)


def test_dut_shell_escape_key_leaves(lab: tuple[Sshd, dict[str, str]]) -> None:
    _, env = lab
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(BIN / "dut"), "dut", "shell"],
        stdin=follower, stdout=follower, stderr=follower, env=env, preexec_fn=_controlling_tty,
    )  # fmt: skip
    os.close(follower)
    try:
        read_until(leader, b"Ctrl-] leaves")
        os.write(leader, b"echo up\r")
        read_until(leader, b"up\r\n")
        os.write(leader, b"\x1d")
        assert process.wait(timeout=30) == 0
        assert b"shell left" in read_until(leader, b"shell left")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
