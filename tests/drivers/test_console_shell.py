"""ConsoleShell against a real shell (bash) on a real pty, through an exporter."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import tether
from tether.drivers.console import ConsoleShellClient
from tether.errors import DriverError, DriverTimeout
from tether.exporter import parse_config, run_exporter_in_thread

LAB = """
name: shell-lab
export:
  tty:
    type: _boot_pty.PtyShellConsole
  shell:
    type: tether.drivers.console.ConsoleShell
    uses: {console: tty}
    config: {prompt: 'pty-shell\\$ ', login_timeout: 20}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[object]:
    with (
        run_exporter_in_thread(parse_config(LAB, "lab.yaml")) as running,
        tether.connect(running.url) as client,
    ):
        yield client


def test_output_and_status(lab: object) -> None:
    shell = lab.shell  # type: ignore[attr-defined]
    assert isinstance(shell, ConsoleShellClient)
    result = shell.run("echo hello; ls /definitely-not-there 2>/dev/null; (exit 7)")
    assert (result.output, result.status) == ("hello", 7)
    assert shell.run("printf 'a\\033[31mred\\033[0m\\n'").output == "ared"
    assert shell.run("printf no-newline").output == "no-newline"


def test_long_output(lab: object) -> None:
    result = lab.shell.run("seq 1 20000", timeout=60)  # type: ignore[attr-defined]
    assert result.output.split("\n") == [str(i) for i in range(1, 20001)]


def test_a_command_that_times_out_leaves_the_shell_usable(lab: object) -> None:
    shell = lab.shell  # type: ignore[attr-defined]
    started = time.monotonic()
    with pytest.raises(DriverTimeout, match="did not finish within 1 s"):
        shell.run("sleep 30", timeout=1)
    assert time.monotonic() - started < 25  # safety net: it did not wait for the sleep
    assert shell.run("echo again").output == "again"


LOGIN_LAB = """
name: login-lab
export:
  tty:
    type: _boot_pty.PtyShellConsole
    config:
      command: [bash, --norc, --noprofile, -c, '{script}']
  shell:
    type: tether.drivers.console.ConsoleShell
    uses: {{console: tty}}
    config: {{prompt: '[#$] ', login: {login}, password: sesame, login_timeout: 10}}
"""

# A login prompt in bash: `read`s the user and password, then an interactive shell.
SCRIPT = (
    'while :; do read -p "board login: " u; read -s -p "Password: " p; echo; '
    'if [ "$u" = root ] && [ "$p" = sesame ]; then exec bash --norc --noprofile -i; fi; '
    "echo Login incorrect; done"
)


def test_it_logs_in_when_asked() -> None:
    config = parse_config(LOGIN_LAB.format(script=SCRIPT, login="root"), "login.yaml")
    with run_exporter_in_thread(config) as running, tether.connect(running.url) as lab:
        result = lab.shell.run("echo $((6 * 7))")
        assert (result.output, result.status) == ("42", 0)


def test_a_refused_login_is_a_clear_error() -> None:
    config = parse_config(LOGIN_LAB.format(script=SCRIPT, login="mallory"), "login.yaml")
    with run_exporter_in_thread(config) as running, tether.connect(running.url) as lab:
        with pytest.raises(DriverError, match="login as 'mallory' was refused") as info:
            lab.shell.run("true")
        assert "sesame" not in str(info.value)


def test_a_console_without_the_prompt_times_out() -> None:
    lab = LAB.replace("pty-shell\\$ ", "never-this> ").replace(
        "login_timeout: 20", "login_timeout: 2"
    )
    with (
        run_exporter_in_thread(parse_config(lab, "lab.yaml")) as running,
        tether.connect(running.url) as lab,
    ):
        with pytest.raises(DriverTimeout, match="no prompt matching 'never-this> ' within 2 s"):
            lab.shell.run("true", timeout=1)
        assert lab.tty.settings().url == "pty"  # the exporter keeps serving


def test_dut_run_prints_the_output_and_exits_with_the_status(
    lab: object, capfd: pytest.CaptureFixture[str]
) -> None:
    from tether.cli.dut import run

    assert run(lab, ["shell", "run", "echo from-dut; (exit 5)"]) == 5  # type: ignore[arg-type]
    assert capfd.readouterr().out == "from-dut\n"
    assert run(lab, ["shell", "run", "true"]) == 0  # type: ignore[arg-type]
    assert capfd.readouterr().out == ""
