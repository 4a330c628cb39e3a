"""``tether mcp``: the sans-IO protocol byte by byte, and the real command over a pipe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tether.cli._mcp import TreeTools
from tether.cli._mcp_protocol import McpServer, McpState, ToolResult, UnknownTool
from tether.drivers.power import MockPower
from tether.testing import serve

BIN = Path(sys.executable).parent
LAB = Path(__file__).with_name("lab.yaml")


class EchoTools:
    def list_tools(self) -> list[dict[str, Any]]:
        return [{"name": "echo", "description": "echo", "inputSchema": {"type": "object"}}]

    def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        if name != "echo":
            raise UnknownTool(name)
        return ToolResult(json.dumps(arguments))


def request(rid: int, method: str, params: dict[str, Any] | None = None) -> bytes:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
    if params is not None:
        body["params"] = params
    return json.dumps(body).encode() + b"\n"


def answers(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def test_protocol_fed_one_byte_at_a_time() -> None:
    server = McpServer(EchoTools())
    stream = (
        request(1, "initialize", {"protocolVersion": "2024-11-05", "capabilities": {}})
        + b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n'
        + request(2, "tools/call", {"name": "echo", "arguments": {"x": 1}})
    )
    out = b""
    for i in range(len(stream)):
        out += server.receive_data(stream[i : i + 1])
    first, second = answers(out)
    assert first["id"] == 1 and first["result"]["protocolVersion"] == "2024-11-05"
    assert first["result"]["capabilities"] == {"tools": {"listChanged": False}}
    assert server.state is McpState.READY
    assert second == {
        "jsonrpc": "2.0",
        "id": 2,
        "result": {"content": [{"type": "text", "text": '{"x": 1}'}], "isError": False},
    }


def test_protocol_errors() -> None:
    server = McpServer(EchoTools())
    (early,) = answers(server.receive_data(request(1, "tools/list")))
    assert early["error"]["code"] == -32002 and "'new'" in early["error"]["message"]
    (bad,) = answers(server.receive_data(b"{not json\n"))
    assert bad["error"]["code"] == -32700 and bad["id"] is None
    server.receive_data(request(2, "initialize", {"protocolVersion": "1999-01-01"}))
    (unknown,) = answers(server.receive_data(request(3, "tools/call", {"name": "nope"})))
    assert unknown["error"] == {"code": -32602, "message": "unknown tool 'nope'"}
    (missing,) = answers(server.receive_data(request(4, "resources/list")))
    assert missing["error"]["code"] == -32601
    assert server.receive_data(b'{"jsonrpc":"2.0","method":"notifications/whatever"}\n') == b""
    (pong,) = answers(server.receive_data(request(5, "ping")))
    assert pong["result"] == {}


def test_tools_from_a_tree_have_schemas_and_report_errors() -> None:
    with serve(MockPower()) as root:
        tools = TreeTools(root)
        names = {tool["name"]: tool for tool in tools.list_tools()}
        assert {"on", "off", "status", "read"} <= set(names)
        assert names["status"]["inputSchema"] == {"type": "object", "properties": {}}
        assert tools.call_tool("on", {}).text == "null"
        assert tools.call_tool("status", {}) == ToolResult("true")
        wrong = tools.call_tool("status", {"bogus": 1})
        assert wrong.is_error and "bogus" in wrong.text
        readings = json.loads(tools.call_tool("read", {}).text)
        assert isinstance(readings, list) and readings


def test_tether_mcp_over_stdio_drives_a_real_exporter() -> None:
    process = subprocess.Popen(
        [str(BIN / "tether"), "mcp", "--exporter-config", str(LAB)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdin is not None and process.stdout is not None

    def ask(rid: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(request(rid, method, params))
        process.stdin.flush()
        answer = json.loads(process.stdout.readline())
        assert answer["id"] == rid, answer
        return answer

    try:
        init = ask(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {}})
        assert init["result"]["serverInfo"]["name"] == "tether cli-lab"
        process.stdin.write(b'{"jsonrpc":"2.0","method":"notifications/initialized"}\n')
        tools = {t["name"]: t for t in ask(2, "tools/list")["result"]["tools"]}
        assert {"power.on", "power.status", "board.power.on"} <= set(tools)
        assert all("connect" not in name for name in tools)  # byte streams are not tools
        on = ask(3, "tools/call", {"name": "power.on", "arguments": {}})
        assert on["result"]["isError"] is False
        status = ask(4, "tools/call", {"name": "power.status", "arguments": {}})
        assert status["result"]["content"] == [{"type": "text", "text": "true"}]
        other = ask(5, "tools/call", {"name": "board.power.status", "arguments": {}})
        assert other["result"]["content"][0]["text"] == "false"
        process.stdin.close()
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    stderr = process.stderr.read().decode() if process.stderr else ""
    assert "serving cli-lab" in stderr


def test_tether_mcp_usage_error() -> None:
    result = subprocess.run(
        [str(BIN / "tether"), "mcp"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "exactly one of" in result.stderr


@pytest.mark.parametrize("line", [b"[]\n", b"42\n"])
def test_protocol_odd_messages(line: bytes) -> None:
    out = McpServer(EchoTools()).receive_data(line)
    assert out == b"" or answers(out)[0]["error"]["code"] == -32600


def test_tool_arguments_are_checked_and_schemas_typed() -> None:
    from tether.drivers.shell import Shell

    with serve(Shell(commands={"greet": "echo hello {who}"})) as root:
        tools = TreeTools(root)
        (run,) = [t for t in tools.list_tools() if t["name"] == "run"]
        schema = run["inputSchema"]
        assert schema["required"] == ["command"]
        assert schema["properties"]["command"] == {"type": "string"}
        missing = tools.call_tool("run", {})
        assert missing.is_error and "missing argument 'command'" in missing.text
        wrong = tools.call_tool("run", {"command": 5})
        assert wrong.is_error and "command" in wrong.text
        unknown = tools.call_tool("run", {"command": "nosuch"})
        assert unknown.is_error and "nosuch" in unknown.text
        items = json.loads(
            tools.call_tool("run", {"command": "greet", "args": {"who": "mcp"}}).text
        )
        assert items[-1]["kind"] == "exit" and items[-1]["status"] == 0
        assert {"kind": "stdout"}.items() <= items[0].items()


def test_tether_mcp_connects_to_a_running_exporter() -> None:
    from tether.exporter import run_exporter_in_thread

    with run_exporter_in_thread(LAB) as running:
        stream = request(1, "initialize", {"protocolVersion": "2025-03-26"}) + request(
            2, "tools/call", {"name": "power.status", "arguments": {}}
        )
        result = subprocess.run(
            [str(BIN / "tether"), "mcp", "--connect", running.url],
            input=stream,
            capture_output=True,
            timeout=60,
        )
    assert result.returncode == 0, result.stderr
    init, status = answers(result.stdout)
    assert init["result"]["protocolVersion"] == "2025-03-26"
    assert status["result"]["content"][0]["text"] == "false"
