"""``dut`` generated from a client tree, in-process over the real protocol (``serve``)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from tether.cli.dut import build_dut, run
from tether.driver import DriverClient
from tether.drivers.composite import Composite
from tether.drivers.power import MockPower
from tether.testing import serve

from ._drivers import BrokenHooked, Gadget, Hooked, OnlyHooked


@pytest.fixture(scope="module")
def lab() -> Iterator[DriverClient]:
    tree = Composite(
        description="the test bench",
        children={
            "power": MockPower(description="bench supply"),
            "gadget": Gadget(labels={"kind": "test"}),
            "board": Composite(
                description="the device under test",
                children={"power": MockPower(voltage=3.3, samples=2), "hooked": Hooked()},
            ),
            "only": OnlyHooked(),
            "broken": BrokenHooked(),
        },
    )
    with serve(tree, name="lab") as root:
        yield root


def dut(lab: DriverClient, *args: str, input: bytes | str | None = None) -> Result:
    return CliRunner().invoke(build_dut(lab), list(args), input=input, prog_name="dut")


# -- listing --------------------------------------------------------------------------------


def test_dut_alone_lists_the_tree(lab: DriverClient) -> None:
    result = dut(lab)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("lab") and "the test bench" in lines[0]
    power = next(line for line in lines if "bench supply" in line)
    assert "power" in power and "tether.power v1" in power
    assert any("board" in line and "the device under test" in line for line in lines)
    assert any("[kind=test]" in line for line in lines)
    assert any("cycle, off, on, read, status" in line for line in lines)
    # nesting: board's power is indented deeper than board
    board = next(i for i, line in enumerate(lines) if "the device under test" in line)
    nested = next(i for i, line in enumerate(lines) if "tether.power" in line and i > board)
    assert len(lines[nested]) - len(lines[nested].lstrip(" │├└─")) > len(lines[board]) - len(
        lines[board].lstrip(" │├└─")
    )


def test_a_node_alone_shows_its_commands_and_children(lab: DriverClient) -> None:
    result = dut(lab, "board")
    assert result.exit_code == 0, result.output
    assert "Usage: dut board" in result.output
    assert "Nodes:" in result.output and "hooked" in result.output and "power" in result.output


# -- calls ----------------------------------------------------------------------------------


def test_power_on_then_status(lab: DriverClient) -> None:
    assert dut(lab, "power", "off").exit_code == 0
    assert dut(lab, "power", "status").output == "false\n"
    result = dut(lab, "power", "on")
    assert result.exit_code == 0 and result.output == ""
    assert dut(lab, "power", "status").output == "true\n"


def test_nested_nodes(lab: DriverClient) -> None:
    assert dut(lab, "board", "power", "on").exit_code == 0
    assert lab.board.power.status() is True  # type: ignore[attr-defined]


def test_typed_positional_and_options(lab: DriverClient) -> None:
    assert dut(lab, "gadget", "add", "2").output == "3\n"
    assert dut(lab, "gadget", "add", "2", "--b", "0x10").output == "18\n"
    assert dut(lab, "gadget", "scale", "1.5").output == "3.0\n"
    assert dut(lab, "gadget", "scale", "1.5", "--factor", "-1").output == "-1.5\n"


def test_underscored_names_also_answer_to_dashes(lab: DriverClient) -> None:
    assert dut(lab, "gadget", "set_level", "4").output == "4\n"
    assert dut(lab, "gadget", "set-level", "5").output == "5\n"


def test_enums_and_literals(lab: DriverClient) -> None:
    assert dut(lab, "gadget", "paint", "green").output == "green/fast\n"
    assert dut(lab, "gadget", "paint", "red", "--mode", "slow").output == "red/slow\n"
    bad = dut(lab, "gadget", "paint", "red", "--mode", "medium")
    assert bad.exit_code == 2
    assert "expected one of fast, slow, got 'medium'" in bad.output


def test_an_enum_is_checked_against_the_choices_in_the_report(lab: DriverClient) -> None:
    result = dut(lab, "gadget", "paint", "blue")
    assert result.exit_code == 2
    assert "Usage: dut gadget paint" in result.output
    assert "expected one of red, green, got 'blue'" in result.output
    assert "Traceback" not in result.output


def test_lists_positional_greedy_and_repeated_options(lab: DriverClient) -> None:
    assert dut(lab, "gadget", "total", "1", "2", "3").output == "6\n"
    result = dut(lab, "gadget", "tag", "x", "--tags", "a,b", "--tags", "c", "--note", "none")
    assert json.loads(result.output) == {"name": "x", "tags": ["a,b", "c"], "note": None}
    assert "--tags STR " in dut(lab, "gadget", "tag", "--help").output
    result = dut(lab, "gadget", "tag", "x")
    assert json.loads(result.output) == {"name": "x", "tags": None, "note": "n"}


def test_bools(lab: DriverClient) -> None:
    assert dut(lab, "gadget", "check", "yes").output == json.dumps([True, False], indent=2) + "\n"
    result = dut(lab, "gadget", "check", "false", "--verbose", "--json")
    assert result.output == "[false, true]\n"
    bad = dut(lab, "gadget", "check", "maybe")
    assert bad.exit_code == 2 and "expected true or false, got 'maybe'" in bad.output


def test_optional(lab: DriverClient) -> None:
    assert dut(lab, "gadget", "maybe", "none").output == "none\n"
    assert dut(lab, "gadget", "maybe", "7").output == "int 7\n"


def test_bytes_arguments_and_results(lab: DriverClient, tmp_path: object) -> None:
    assert dut(lab, "gadget", "hexlify", "AB").output == "4142\n"
    assert dut(lab, "gadget", "hexlify", "hex:00ff").output == "00ff\n"
    assert dut(lab, "gadget", "hexlify", "b64:AAE=").output == "0001\n"
    assert dut(lab, "gadget", "hexlify", "@-", input=b"\x01\x02").output == "0102\n"
    result = dut(lab, "gadget", "blob", "3")
    assert result.stdout_bytes == b"\xab\xab\xab"
    assert dut(lab, "--json", "gadget", "blob", "3").output == '"q6ur"\n'


def test_varargs_and_kwargs(lab: DriverClient) -> None:
    result = dut(lab, "gadget", "varargs", "1", "2", "3", "--named", "a=x", "--named", "b=y")
    assert json.loads(result.output) == [1, [2, 3], {"a": "x", "b": "y"}]
    bad = dut(lab, "gadget", "varargs", "1", "--named", "oops")
    assert bad.exit_code == 2 and "expected KEY=VALUE" in bad.output


def test_structured_results_print_as_json(lab: DriverClient) -> None:
    result = dut(lab, "gadget", "info")
    assert json.loads(result.output) == {"name": "gadget", "size": 3}
    assert result.output.startswith("{\n")  # indented for people
    assert dut(lab, "gadget", "info", "--json").output == '{"name": "gadget", "size": 3}\n'
    assert dut(lab, "gadget", "nothing").output == ""
    assert dut(lab, "gadget", "nothing", "--json").output == "null\n"
    assert dut(lab, "--json", "gadget", "add", "1").output == "2\n"


def test_streaming_calls_print_one_item_per_line(lab: DriverClient) -> None:
    assert dut(lab, "gadget", "count", "3").output == "0\n1\n2\n"
    result = dut(lab, "gadget", "infos")
    assert [json.loads(line) for line in result.output.splitlines()] == [
        {"name": "i0", "size": 0},
        {"name": "i1", "size": 1},
    ]
    lab.board.power.on()  # type: ignore[attr-defined]
    readings = dut(lab, "board", "power", "read").output.splitlines()
    assert [json.loads(r) for r in readings] == [{"voltage": 3.3, "current": 0.5}] * 2


def test_byte_stream_methods_attach_stdin_and_stdout(lab: DriverClient) -> None:
    result = dut(lab, "gadget", "upper", input=b"hello tether\n")
    assert result.exit_code == 0, result.output
    assert result.stdout_bytes == b"HELLO TETHER\n"
    piped = dut(lab, "gadget", "console", input=b"piped")
    assert piped.stdout_bytes == b"PIPED"


# -- help -----------------------------------------------------------------------------------


def test_method_help_from_signature_and_docstring(lab: DriverClient) -> None:
    result = dut(lab, "gadget", "add", "--help")
    assert result.exit_code == 0
    out = result.output
    assert "Usage: dut gadget add [OPTIONS] A" in out
    assert "Add two integers." in out and "Returns their sum." in out
    assert "Signature: add(a: int, b: int = 1) -> int" in out
    assert "--b INT" in out and "(default: 1)" in out
    paint = dut(lab, "gadget", "paint", "--help").output
    assert "--mode [fast|slow]" in paint
    node = dut(lab, "gadget", "--help").output
    assert "add" in node and "Add two integers." in node and "forward" in node
    assert "Streaming" in dut(lab, "gadget", "count", "--help").output


# -- errors ---------------------------------------------------------------------------------


def test_unknown_node_or_method_is_a_usage_error(lab: DriverClient) -> None:
    for args in (["nope"], ["power", "explode"], ["board", "nope", "on"]):
        result = dut(lab, *args)
        assert result.exit_code == 2, args
        assert "No such command" in result.output


def test_bad_argument_is_a_usage_error(lab: DriverClient) -> None:
    result = dut(lab, "gadget", "add", "two")
    assert result.exit_code == 2
    assert "Invalid value for 'A': expected an integer, got 'two'" in result.output
    missing = dut(lab, "gadget", "add")
    assert missing.exit_code == 2 and "Missing argument 'A'" in missing.output
    extra = dut(lab, "power", "on", "now")
    assert extra.exit_code == 2 and "unexpected extra argument" in extra.output


def test_driver_error_prints_remote_type_and_message(lab: DriverClient) -> None:
    result = dut(lab, "gadget", "fail", "--message", "it broke")
    assert result.exit_code == 1
    assert result.output == "Error: ValueError: it broke\n"


def test_run_returns_exit_status(
    lab: DriverClient, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert run(lab, ["gadget", "add", "40", "--b", "2"]) == 0
    assert capsysbinary.readouterr().out == b"42\n"
    assert run(lab, ["gadget", "fail"]) == 1
    assert b"Error: ValueError: boom" in capsysbinary.readouterr().err
    assert run(lab, ["nope"]) == 2


# -- the driver's own commands --------------------------------------------------------------


def test_cli_hook_adds_and_replaces_commands(lab: DriverClient) -> None:
    assert dut(lab, "board", "hooked", "hello").output == "pongpong\n"
    assert dut(lab, "board", "hooked", "hello", "--loud").output == "PONGPONG\n"
    assert dut(lab, "board", "hooked", "status").output == "custom status\n"
    # generated commands stay for the other methods, typed from the interface
    assert dut(lab, "board", "hooked", "ping", "1").output == "pong\n"
    assert dut(lab, "board", "hooked", "ping", "x").exit_code == 2


def test_cli_hook_attribute_can_replace_all_generated_commands(lab: DriverClient) -> None:
    assert dut(lab, "only", "whoami").output == "only\n"
    assert dut(lab, "only", "secret").exit_code == 2


def test_a_failing_cli_hook_is_reported_and_generated_commands_remain(
    lab: DriverClient, capsys: pytest.CaptureFixture[str]
) -> None:
    result = dut(lab, "broken", "works")  # the hook runs when the command tree is built
    assert result.exit_code == 0
    assert result.stdout == "still works\n"
    assert (
        "BrokenHookClient.cli() raised RuntimeError: hook bug; skipped" in capsys.readouterr().err
    )
