"""Shell: configured commands as real subprocesses, streamed output, quoting, timeouts."""

from __future__ import annotations

import os
import select
from pathlib import Path
from typing import Any

import pytest

from tether.cli.dut import run as dut_run
from tether.drivers.composite import Composite
from tether.drivers.shell import CommandFailed, Shell, ShellClient, ShellOutput
from tether.errors import ConfigError, DriverError
from tether.testing import DriverTestConfig, ForegroundDriverTest, serve

GUARD = 10.0

COMMANDS: dict[str, Any] = {
    "greet": "echo hello {name}",
    "count": {"command": "seq {n}", "params": {"n": "int"}, "description": "count to n"},
    "mixed": "echo one; echo two >&2; echo three",
    "fail": "echo oops >&2; exit 3",
    "env": {"command": "echo $LAB $ONLY_HERE", "env": {"ONLY_HERE": "yes"}},
    "flag": {
        "command": "echo {verbose} {level}",
        "params": {
            "verbose": {"type": "bool", "default": False},
            "level": {"type": "str", "choices": ["low", "high"], "default": "low"},
        },
    },
    "pid": {"command": "echo $$ > {pidfile}; echo started; exec sleep 1000"},
    "hang": {"command": "sleep 1000", "timeout": 0.05},
}


def shell(**extra: Any) -> Shell:
    return Shell(commands=COMMANDS, env={"LAB": "lab-a"}, **extra)


def test_run_collects_output_and_status() -> None:
    with serve(shell()) as sh:
        assert isinstance(sh, ShellClient)
        result = sh.run("greet", name="world")
        assert (result.status, result.stdout, result.stderr) == (0, b"hello world\n", b"")
        assert sh.run("count", n=3).stdout == b"1\n2\n3\n"
        assert sh.run("env").stdout == b"lab-a yes\n"
        failed = sh.run("fail")
        assert (failed.status, failed.stderr) == (3, b"oops\n")
        with pytest.raises(CommandFailed, match=r"fail exited with 3: oops"):
            failed.check()


def test_run_streaming_yields_chunks_then_the_exit_status() -> None:
    with serve(shell()) as sh:
        items = list(sh.run_streaming("mixed"))
    assert all(isinstance(item, ShellOutput) for item in items)
    assert items[-1] == ShellOutput(kind="exit", status=0)
    out = b"".join(i.data for i in items if i.kind == "stdout")
    err = b"".join(i.data for i in items if i.kind == "stderr")
    assert (out, err) == (b"one\nthree\n", b"two\n")


def test_arguments_are_quoted_never_shell_syntax(tmp_path: Path) -> None:
    victim = tmp_path / "pwned"
    with serve(shell()) as sh:
        evil = f"x; touch {victim} $(touch {victim}) `touch {victim}`"
        assert sh.run("greet", name=evil).stdout == f"hello {evil}\n".encode()
        assert sh.run("greet", name="a'b\"c").stdout == b"hello a'b\"c\n"
    assert not victim.exists()


def test_typed_parameters() -> None:
    with serve(shell()) as sh:
        assert sh.run("flag").stdout == b"false low\n"
        assert sh.run("flag", verbose=True, level="high").stdout == b"true high\n"
        assert sh.run("flag", verbose="yes").stdout == b"true low\n"
        with pytest.raises(
            DriverError, match=r"command 'count', parameter 'n': expected int \(got 'many'\)"
        ):
            sh.run("count", n="many")
        with pytest.raises(
            DriverError, match=r"parameter 'level': expected one of low, high \(got 'max'\)"
        ):
            sh.run("flag", level="max")
        with pytest.raises(DriverError, match=r"command 'count': missing argument 'n'"):
            sh.run("count")
        with pytest.raises(
            DriverError, match=r"command 'greet' has no parameter 'nme' \(parameters: name\)"
        ):
            sh.run("greet", nme="x")
        with pytest.raises(DriverError, match=r"no command 'rm' \(configured: count, env, fail"):
            sh.run("rm")
        assert sh.run("greet", name="still serving").status == 0


def test_list_commands() -> None:
    with serve(shell(timeout=5)) as sh:
        commands = sh.list_commands()
    assert set(commands) == set(COMMANDS)
    count = commands["count"]
    assert (count.description, count.template, count.timeout) == ("count to n", "seq {n}", 5)
    assert count.params["n"].type == "int" and count.params["n"].required
    assert commands["greet"].params["name"].type == "str"  # undeclared placeholder: str
    assert not commands["flag"].params["verbose"].required
    assert commands["hang"].timeout == 0.05


def test_timeout_kills_the_command() -> None:
    with serve(shell()) as sh:
        result = sh.run("hang")
    assert result.timed_out and result.status == -9
    with pytest.raises(CommandFailed, match=r"hang timed out and was killed"):
        result.check()


def test_timeout_in_virtual_time() -> None:
    config = DriverTestConfig(
        Shell, driver_config={"commands": {"wait": "sleep 1000"}, "timeout": 3600}
    )
    with ForegroundDriverTest(config) as test:
        test.start_driver()
        rt = test.runtime
        start = rt.now()

        async def collect() -> list[ShellOutput]:
            return [item async for item in test.driver.run("wait")]

        items = rt.run_to_completion(collect())
        assert items == [ShellOutput(kind="exit", status=-9, timed_out=True)]
        assert rt.now() - start == pytest.approx(3600)


def test_stopping_the_stream_kills_the_command(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    with serve(shell()) as sh:
        items = sh.run_streaming("pid", pidfile=str(pidfile))
        assert next(items) == ShellOutput(kind="stdout", data=b"started\n")
        pidfd = os.pidfd_open(int(pidfile.read_text()))
        try:
            items.close()  # the client stops reading: the call is cancelled
            ready, _, _ = select.select([pidfd], [], [], GUARD)
            assert ready, "the command survived the cancelled call"
        finally:
            os.close(pidfd)
        assert sh.run("greet", name="after").status == 0


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"parameter\(s\) count not used in 'echo hi'"):
        Shell(commands={"x": {"command": "echo hi", "params": {"count": "int"}}})
    with pytest.raises(ConfigError, match=r"placeholder \{a.b\}.*expected a plain \{name\}"):
        Shell(commands={"x": "echo {a.b}"})
    with pytest.raises(ConfigError, match=r"placeholder \{n:3d\}"):
        Shell(commands={"x": "echo {n:3d}"})
    with pytest.raises(ConfigError, match=r"command name 'bad name'"):
        Shell(commands={"bad name": "true"})
    with pytest.raises(ConfigError, match=r"commands.x.params.n.type"):
        Shell(commands={"x": {"command": "echo {n}", "params": {"n": "complex"}}})
    with pytest.raises(ConfigError, match=r"bad template"):
        Shell(commands={"x": "echo {"})


def test_dut_commands_from_the_cli_hook(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    with serve(Composite(children={"sh": shell()})) as root:
        assert dut_run(root, ["sh", "count", "--n", "2"]) == 0
        assert capsysbinary.readouterr().out == b"1\n2\n"
        assert dut_run(root, ["sh", "flag", "--verbose", "true", "--level", "high"]) == 0
        assert capsysbinary.readouterr().out == b"true high\n"
        assert dut_run(root, ["sh", "fail"]) == 3
        assert capsysbinary.readouterr().err == b"oops\n"
        assert dut_run(root, ["sh", "count"]) == 2  # missing --n: a usage error
