"""The Model Context Protocol's server side over stdio, sans-IO.

Theory of operation. MCP's stdio transport carries JSON-RPC 2.0 messages, one per line (UTF-8,
no embedded newlines). :class:`McpServer` takes bytes in (:meth:`McpServer.receive_data`) and
returns the bytes to write out; it never reads or writes a file itself, so tests feed it byte
by byte. What the tools are and how a call runs is a :class:`ToolSet` handed in.

The session follows one table, :data:`TRANSITIONS`: ``initialize`` moves ``new`` to
``initializing``, the client's ``notifications/initialized`` moves it to ``ready``. ``ping``
works in every state; ``tools/list`` and ``tools/call`` once ``initialize`` was answered (a
client may send them before its ``initialized`` notification arrives). Anything else before
``initialize`` is refused with an error naming the state and the method.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "PROTOCOL_VERSIONS",
    "TRANSITIONS",
    "McpServer",
    "McpState",
    "ToolResult",
    "ToolSet",
    "UnknownTool",
]

#: Protocol revisions this server speaks, newest first (it answers with the client's when known).
PROTOCOL_VERSIONS = ("2025-06-18", "2025-03-26", "2024-11-05")
#: A line longer than this is refused (and dropped) instead of being buffered forever.
MAX_LINE = 16 << 20

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
NOT_INITIALIZED = -32002


class McpState(enum.Enum):
    NEW = "new"
    INITIALIZING = "initializing"
    READY = "ready"


#: (state, method) -> state after it. A method missing for a state is refused in that state.
TRANSITIONS: dict[tuple[McpState, str], McpState] = {
    (McpState.NEW, "initialize"): McpState.INITIALIZING,
    (McpState.NEW, "ping"): McpState.NEW,
    (McpState.INITIALIZING, "notifications/initialized"): McpState.READY,
    (McpState.INITIALIZING, "ping"): McpState.INITIALIZING,
    (McpState.INITIALIZING, "tools/list"): McpState.INITIALIZING,
    (McpState.INITIALIZING, "tools/call"): McpState.INITIALIZING,
    (McpState.READY, "ping"): McpState.READY,
    (McpState.READY, "tools/list"): McpState.READY,
    (McpState.READY, "tools/call"): McpState.READY,
    (McpState.READY, "notifications/initialized"): McpState.READY,
    (McpState.INITIALIZING, "notifications/cancelled"): McpState.INITIALIZING,
    (McpState.READY, "notifications/cancelled"): McpState.READY,
}


class UnknownTool(KeyError):
    """``tools/call`` named a tool the set does not have."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call returned: text, and whether it is an error the model should see."""

    text: str
    is_error: bool = False


class ToolSet(Protocol):
    """The tools a server offers."""

    def list_tools(self) -> list[dict[str, Any]]:
        """MCP tool descriptions: ``name``, ``description``, ``inputSchema``."""
        ...

    def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        """Run one tool; raises :class:`UnknownTool` for a name it does not have."""
        ...


class _RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class McpServer:
    """One MCP session's server side: bytes in, bytes out.

    Args:
        tools: the tools offered.
        name, version: the server's ``serverInfo``.
        instructions: optional text the client may show the model.
    """

    tools: ToolSet
    name: str = "tether"
    version: str = "0"
    instructions: str = ""
    state: McpState = McpState.NEW
    _buffer: bytearray = field(default_factory=bytearray)
    _dropping: bool = False

    def receive_data(self, data: bytes) -> bytes:
        """Feed bytes read from the client; return the bytes to write back (maybe empty)."""
        out = bytearray()
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    self._buffer.clear()
                    if not self._dropping:
                        out += _encode(_error(None, INVALID_REQUEST, "message too long"))
                    self._dropping = True
                return bytes(out)
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._dropping:  # the tail of a line already refused
                self._dropping = False
                continue
            if line.strip():
                out += self.handle_line(line)

    def handle_line(self, line: bytes) -> bytes:
        """Handle one complete message (or batch); return the response bytes."""
        try:
            message = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            return _encode(_error(None, PARSE_ERROR, f"not JSON: {exc}"))
        if isinstance(message, list):  # a batch (2025-03-26 allowed them)
            answers = [a for a in (self._handle(m) for m in message) if a is not None]
            return _encode(answers) if answers else b""
        answer = self._handle(message)
        return _encode(answer) if answer is not None else b""

    def _handle(self, message: Any) -> dict[str, Any] | None:
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _error(None, INVALID_REQUEST, "expected a JSON-RPC 2.0 object")
        if "method" not in message:
            return None  # a response to a request we never send: ignore
        has_id = "id" in message
        request_id = message.get("id")
        method = message["method"]
        try:
            if not isinstance(method, str):
                raise _RpcError(INVALID_REQUEST, "method must be a string")
            params = message.get("params") or {}
            if not isinstance(params, dict):
                raise _RpcError(INVALID_PARAMS, "params must be an object")
            result = self._dispatch(method, params)
        except _RpcError as exc:
            return _error(request_id, exc.code, exc.message) if has_id else None
        return {"jsonrpc": "2.0", "id": request_id, "result": result} if has_id else None

    def _dispatch(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        after = TRANSITIONS.get((self.state, method))
        if after is None:
            if method.startswith("notifications/"):
                return {}
            if not any(m == method for _, m in TRANSITIONS):
                raise _RpcError(METHOD_NOT_FOUND, f"unknown method {method!r}")
            raise _RpcError(
                NOT_INITIALIZED,
                f"{method!r} is not allowed in state {self.state.value!r} (send initialize first)",
            )
        self.state = after
        if method == "initialize":
            return self._initialize(params)
        if method == "tools/list":
            return {"tools": self.tools.list_tools()}
        if method == "tools/call":
            return self._call(params)
        return {}

    def _initialize(self, params: dict[str, Any]) -> dict[str, Any]:
        asked = params.get("protocolVersion")
        version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0]
        result: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": self.name, "version": self.version},
        }
        if self.instructions:
            result["instructions"] = self.instructions
        return result

    def _call(self, params: dict[str, Any]) -> dict[str, Any]:
        name = params.get("name")
        arguments = params.get("arguments") or {}
        if not isinstance(name, str):
            raise _RpcError(INVALID_PARAMS, "tools/call needs a tool 'name'")
        if not isinstance(arguments, dict):
            raise _RpcError(INVALID_PARAMS, f"{name}: 'arguments' must be an object")
        try:
            outcome = self.tools.call_tool(name, arguments)
        except UnknownTool:
            raise _RpcError(INVALID_PARAMS, f"unknown tool {name!r}") from None
        return {
            "content": [{"type": "text", "text": outcome.text}],
            "isError": outcome.is_error,
        }


def _error(request_id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}


def _encode(message: Any) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
