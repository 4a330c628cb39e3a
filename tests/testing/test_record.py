"""Record a real session (MockPower, Shell running /bin/sh, a TCP byte stream to a real echo
server) and replay it with the exporter gone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli._echo import echo_server
from tether.driver import Driver
from tether.drivers.network import TcpNetwork
from tether.drivers.power import MockPower
from tether.drivers.shell import Shell
from tether.errors import ConfigError, DriverError
from tether.testing import ReplayMismatch, load_recording, record, replay, serve, unrecorded


def bench(port: int) -> Driver:
    return Driver(
        children={
            "power": MockPower(samples=3),
            "shell": Shell(commands={"greet": "echo hello; echo oops >&2; exit 3"}),
            "net": TcpNetwork(host="127.0.0.1", port=port),
        }
    )


def session(dut: object) -> dict[str, object]:
    """The test body, run live and replayed: returns what it saw."""
    seen: dict[str, object] = {}
    dut.power.on()  # type: ignore[attr-defined]
    seen["status"] = dut.power.status()  # type: ignore[attr-defined]
    seen["readings"] = [r.voltage for r in dut.power.read()]  # type: ignore[attr-defined]
    result = dut.shell.run("greet")  # type: ignore[attr-defined]
    seen["shell"] = (result.status, result.stdout, result.stderr)
    with pytest.raises(DriverError) as info:
        dut.shell.run("nosuch")  # type: ignore[attr-defined]
    seen["error"] = (info.value.remote_type, info.value.message)
    with dut.net.connect() as stream:  # type: ignore[attr-defined]
        stream.send(b"ping\n")
        stream.send_eof()
        data = b""
        while chunk := stream.receive():
            data += chunk
    seen["echo"] = data
    return seen


def test_record_then_replay_without_the_exporter(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    with echo_server() as port, serve(bench(port)) as dut, record(dut, path):
        live = session(dut)
    assert live["status"] is True and live["shell"] == (3, b"hello\n", b"oops\n")
    assert live["echo"] == b"ping\n" and len(live["readings"]) == 3  # type: ignore[arg-type]
    # the exporter and the echo server are gone: the replay answers alone
    with replay(path) as dut:
        assert set(dut.children) == {"power", "shell", "net"}
        assert type(dut.power).__name__ == "PowerClient"
        assert session(dut) == live
    header, reports, operations = load_recording(path)
    assert header["tether_record"] == 1 and list(reports) == ["dut"]
    ops = [(op["op"], op["path"], op["method"]) for op in operations]
    assert ops == [
        ("call", "power", "on"),
        ("call", "power", "status"),
        ("streaming", "power", "read"),
        ("streaming", "shell", "run"),
        ("streaming", "shell", "run"),
        ("stream", "net", "connect"),
    ]
    assert operations[4]["end"] == "error" and operations[4]["error"]["type"] == "DriverError"
    events = operations[5]["events"]
    assert events[0] == ["send", {"$bytes": "cGluZwo="}] and events[1] == ["eof"]


def test_a_different_call_names_what_was_expected(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    with serve(MockPower()) as dut, record(dut, path):
        dut.on()
        assert dut.status() is True
    with replay(path) as dut, pytest.raises(ReplayMismatch) as info:
        dut.off()
    assert "operation 1: expected dut: (root).on(), got dut: (root).off()" in str(info.value)
    with (
        pytest.raises(ReplayMismatch, match=r"1 recorded operation.*not replayed.*status"),
        replay(path) as dut,
    ):
        dut.on()
    with replay(path) as dut:
        dut.on()
        dut.status()
        with pytest.raises(ReplayMismatch, match=r"no more operations.*status"):
            dut.status()


def test_a_file_that_is_not_a_recording(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"hello": 1}) + "\n")
    with pytest.raises(ConfigError, match="not a tether recording"), replay(bad):
        pass
    with pytest.raises(ConfigError, match="cannot read"), replay(tmp_path / "none.jsonl"):
        pass


def test_calls_made_unrecorded_stay_out_of_the_recording(tmp_path: Path) -> None:
    path = tmp_path / "session.jsonl"
    with serve(MockPower()) as dut, record(dut, path):
        dut.on()
        with unrecorded():  # what a harness does around the test (console logs)
            assert dut.status() is True
    _, _, operations = load_recording(path)
    assert [op["method"] for op in operations] == ["on"]
