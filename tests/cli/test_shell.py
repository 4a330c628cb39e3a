"""``tether shell`` and ``dut`` as real processes against real exporters (unix, TLS, pty)."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from tether.cli import main as tether_main
from tether.exporter import init_lab_certs, run_exporter_in_thread

from ._echo import echo_server, exchange

BIN = Path(sys.executable).parent
LAB = Path(__file__).with_name("lab.yaml")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PATH"] = "/usr/bin:/bin"  # `dut` is found because tether shell puts it on PATH
    env.update(extra)
    return env


def tether(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "tether"), *args],
        capture_output=True,
        text=True,
        env=env or clean_env(),
        timeout=60,
    )


def test_shell_runs_one_command_and_exits_with_its_status() -> None:
    script = (
        "dut power on && dut power status && dut board power status\n"
        'echo "$TETHER_HOST" "$TETHER_SHELL" "${TETHER_TOKEN-no-token}"\n'
        "exit 3"
    )
    result = tether("shell", "--exporter-config", str(LAB), "--", "sh", "-c", script)
    assert result.returncode == 3, result.stderr
    on, off, env = result.stdout.splitlines()
    assert (on, off) == ("true", "false")  # every dut joined the shell's one session
    host, name, token = env.split(" ")
    assert host.startswith("unix://") and "?session=" in host
    assert (name, token) == ("cli-lab", "no-token")


def test_dut_in_a_shell_lists_and_reports_errors() -> None:
    result = tether(
        "shell", "--exporter-config", str(LAB), "--",
        "sh", "-c", "dut; dut board power read --json; dut board nope; echo status=$?",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "cli-lab  [board=none]"
    assert "power  tether.power v1  bench supply" in result.stdout
    assert lines[-3:] == ['{"voltage": 0.0, "current": 0.0}'] * 2 + ["status=2"]
    assert "No such command 'nope'" in result.stderr


def test_hooks_and_tokens_with_an_in_process_exporter(tmp_path: Path) -> None:
    config = tmp_path / "hooked.yaml"
    config.write_text(
        LAB.read_text()
        + "hooks: {before_lease: dut board power on, on_failure: end_lease}\n"
        + "tokens: []\n"  # a one-off token for this shell, passed on in TETHER_TOKEN
    )
    script = 'dut board power status && echo "${TETHER_TOKEN%%_*}"'
    result = tether("shell", "--exporter-config", str(config), "--", "sh", "-c", script)
    assert (result.returncode, result.stdout) == (0, "true\ntth\n"), result.stderr


def test_a_failing_before_lease_hook_ends_the_shell(tmp_path: Path) -> None:
    config = tmp_path / "failing.yaml"
    config.write_text(LAB.read_text() + "hooks: {before_lease: exit 4, on_failure: end_lease}\n")
    result = CliRunner().invoke(
        tether_main, ["shell", "--exporter-config", str(config), "--", "true"]
    )
    assert result.exit_code == 1
    assert "Error: before_lease failed" in result.output


def test_interactive_subshell_in_a_pty() -> None:
    leader, follower = pty.openpty()
    env = clean_env(SHELL="/bin/sh", PS1="$ ")
    process = subprocess.Popen(
        [str(BIN / "tether"), "shell", "--exporter-config", str(LAB)],
        stdin=follower, stdout=follower, stderr=follower, env=env, start_new_session=True,
    )  # fmt: skip
    os.close(follower)
    try:
        seen = read_until(leader, b"[tether cli-lab] $ ")
        assert b"`dut` lists the devices" in seen
        os.write(leader, b"dut power on; dut power status\n")
        assert b"\ntrue\r\n" in read_until(leader, b"[tether cli-lab] $ ")
        os.write(leader, b"exit 5\n")
        assert process.wait(timeout=30) == 5
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)


def read_until(fd: int, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = os.read(fd, 4096)
        assert chunk, f"EOF before {marker!r}; got {data!r}"
        data += chunk
    return data


def test_ctrl_c_goes_to_the_child_not_the_shell() -> None:
    child = (
        "import signal, sys\n"
        "signal.signal(signal.SIGINT, lambda *a: sys.exit(7))\n"
        "print('ready', flush=True)\n"
        "signal.pause()\n"
    )
    process = subprocess.Popen(
        [str(BIN / "tether"), "shell", "--exporter-config", str(LAB), "--", sys.executable, "-c", child],
        stdout=subprocess.PIPE, text=True, env=clean_env(), start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    os.killpg(process.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert process.wait(timeout=30) == 7


@pytest.fixture()
def tls_exporter(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    certs = init_lab_certs(tmp_path / "certs")
    config = tmp_path / "tls.yaml"
    config.write_text(
        LAB.read_text()
        + f"tls: {{cert: {certs.server_cert}, key: {certs.server_key}, ca: {certs.ca}}}\n"
        + "tokens: []\n"
    )
    with run_exporter_in_thread(config, listen="tls://127.0.0.1:0") as running:
        assert running.token is not None
        yield running.url, running.token, certs.ca


def test_shell_connects_to_a_remote_exporter_over_tls(
    tls_exporter: tuple[str, str, Path], tmp_path: Path
) -> None:
    url, token, ca = tls_exporter
    certs = ca.parent
    result = tether(
        "shell", "--connect", url, "--token", token, "--ca", str(ca),
        "--cert", str(certs / "client.pem"), "--key", str(certs / "client.key"), "--",
        "sh", "-c", 'dut power on && dut power status && echo "$TETHER_HOST" "$TETHER_CA"',
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    status, env = result.stdout.splitlines()
    assert status == "true"
    host, ca_env = env.split(" ")
    assert host.startswith(url + "?session=") and ca_env == str(ca)


def test_shell_with_a_wrong_token_fails_clearly(tls_exporter: tuple[str, str, Path]) -> None:
    url, _, ca = tls_exporter
    certs = ca.parent
    result = tether(
        "shell", "--connect", url, "--token", "tth_wrong", "--ca", str(ca),
        "--cert", str(certs / "client.pem"), "--key", str(certs / "client.key"), "--", "true",
    )  # fmt: skip
    assert result.returncode == 1
    assert "Error:" in result.stderr and "token" in result.stderr
    assert "Traceback" not in result.stderr


def test_shell_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    neither = runner.invoke(tether_main, ["shell", "--", "true"])
    assert neither.exit_code == 2 and "exactly one of" in neither.output
    both = runner.invoke(tether_main, ["shell", "--exporter-config", str(LAB), "--token", "x"])
    assert both.exit_code == 2 and "go with --connect" in both.output
    missing = runner.invoke(tether_main, ["shell", "--exporter-config", str(tmp_path / "no.yaml")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nexport:\n  p: {type: no.such.Driver}\n")
    invalid = tether("shell", "--exporter-config", str(bad), "--", "true")
    assert (
        invalid.returncode == 1
        and "bad.yaml" in invalid.stderr
        and "bad.yaml:3: export.p.type" in invalid.stderr
    )
    unknown = tether("shell", "--exporter-config", str(LAB), "--", "no-such-command-here")
    assert unknown.returncode == 127 and "command not found" in unknown.stderr


def test_dut_outside_a_shell() -> None:
    result = subprocess.run(
        [str(BIN / "dut"), "power", "on"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert result.returncode == 2 and "TETHER_HOST is not set" in result.stderr
    gone = subprocess.run(
        [str(BIN / "dut")],
        capture_output=True,
        text=True,
        env=clean_env(TETHER_HOST="unix:///nonexistent/tether.sock"),
        timeout=60,
    )
    assert gone.returncode == 1 and "cannot connect to unix:///nonexistent" in gone.stderr


def test_dut_forward_through_a_real_exporter(tmp_path: Path) -> None:
    with echo_server() as echo_port:
        config = tmp_path / "net.yaml"
        config.write_text(
            "name: net-lab\nexport:\n"
            f"  ssh: {{type: tether.drivers.network.TcpNetwork, config: {{host: 127.0.0.1, port: {echo_port}}}}}\n"
        )
        process = subprocess.Popen(
            [str(BIN / "tether"), "shell", "--exporter-config", str(config), "--",
             "dut", "ssh", "forward", "--method", "connect", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
            start_new_session=True,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line.startswith("Forwarding 127.0.0.1:") and "-> ssh.connect" in line, line
            port = int(line.split()[1].rsplit(":", 1)[1])
            assert exchange(port, b"one") == b"one"
            assert exchange(port, b"two" * 100000) == b"two" * 100000
            os.killpg(process.pid, signal.SIGINT)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_console_attaches_a_terminal_in_raw_mode(tmp_path: Path) -> None:
    with echo_server() as echo_port:
        config = tmp_path / "net.yaml"
        config.write_text(
            "name: net-lab\nexport:\n"
            f"  ssh: {{type: tether.drivers.network.TcpNetwork, config: {{host: 127.0.0.1, port: {echo_port}}}}}\n"
        )
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [str(BIN / "tether"), "shell", "--exporter-config", str(config), "--", "dut", "ssh", "console"],
            stdin=follower, stdout=follower, stderr=follower, env=clean_env(), start_new_session=True,
        )  # fmt: skip
        os.close(follower)
        try:
            read_until(leader, b"Ctrl-] to quit")
            lflag = termios.tcgetattr(leader)[3]
            assert not lflag & (termios.ICANON | termios.ECHO)  # raw while attached
            os.write(leader, b"typed\r")  # raw mode: no local echo, no CR->LF translation
            assert b"typed\r" in read_until(leader, b"typed\r")
            os.write(leader, b"\x1d")
            assert process.wait(timeout=30) == 0
            assert termios.tcgetattr(leader)[3] & termios.ICANON  # restored at exit
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(leader)


def test_ctrl_c_stops_a_streaming_call_with_status_130() -> None:
    process = subprocess.Popen(
        [str(BIN / "tether"), "shell", "--exporter-config", str(LAB), "--", "dut", "slow", "read"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(),
        start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == '{"voltage": 0.0, "current": 0.0}\n'  # printed at once
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert "Traceback" not in process.stderr.read()


def test_dut_with_tether_host_set_by_hand() -> None:
    with run_exporter_in_thread(LAB) as running:
        result = subprocess.run(
            [str(BIN / "dut"), "--json", "board", "power", "read"],
            capture_output=True,
            text=True,
            env=clean_env(TETHER_HOST=running.url),
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout == '{"voltage": 0.0, "current": 0.0}\n' * 2
