"""``tether mcp``: the device's exported methods as Model Context Protocol tools, on stdio.

Theory of operation. The command opens a client tree the way ``tether shell`` does
(``--exporter-config`` runs the exporter in this process, ``--connect`` reaches one,
``--selector`` leases one), builds a :class:`TreeTools` from it and runs the sans-IO
:class:`~._mcp_protocol.McpServer` over stdin/stdout. Each unary or streaming method of each
node is one tool, named by its path (``power.on``, ``board.power.status``); its input schema
comes from the same types ``dut`` reads (``_dut_commands._param_specs``). Byte streams are
not tools. Stdout carries protocol messages only: the real fd 1 is kept for them and fd 1
pointed at stderr, so nothing a hook or driver prints can corrupt the stream.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from tether.driver import DriverClient
from tether.errors import DriverError, InvalidArgument, TetherError

from ._dut_commands import _param_specs as param_specs
from ._dut_output import jsonable
from ._dut_types import TypeSpec
from ._mcp_protocol import McpServer, ToolResult, UnknownTool

__all__ = ["TreeTools", "json_schema", "mcp"]

_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
_TOOL_KINDS = ("unary", "streaming")


def json_schema(spec: TypeSpec) -> dict[str, Any]:
    """The JSON schema of values of ``spec`` (bytes travel as base64 text)."""
    kind = spec.kind
    simple = {"int": "integer", "float": "number", "str": "string", "bool": "boolean"}
    if kind in simple:
        return {"type": simple[kind]}
    if kind == "bytes":
        return {"type": "string", "contentEncoding": "base64"}
    if kind == "none":
        return {"type": "null"}
    if kind == "choice":
        return {"enum": [jsonable(getattr(v, "value", v)) for v in spec.choices]}
    if kind == "list" and spec.item is not None:
        return {"type": "array", "items": json_schema(spec.item)}
    if kind == "optional" and spec.item is not None:
        return {"anyOf": [json_schema(spec.item), {"type": "null"}]}
    return {"description": spec.label} if spec.label not in ("any", "") else {}


def _decode(spec: TypeSpec, value: Any) -> Any:
    """Undo the JSON encoding of bytes (base64) where the schema said so."""
    import base64

    if spec.kind == "bytes" and isinstance(value, str):
        return base64.b64decode(value, validate=True)
    if spec.kind == "optional" and spec.item is not None and value is not None:
        return _decode(spec.item, value)
    if spec.kind == "list" and spec.item is not None and isinstance(value, list):
        return [_decode(spec.item, v) for v in value]
    return value


class _Tool:
    def __init__(self, name: str, client: DriverClient, method: str, entry: dict[str, Any]):
        self.name = name
        self.client = client
        self.method = method
        self.kind = str(entry.get("kind", "unary"))
        self.params: list[dict[str, Any]] = list(entry.get("params", []))
        self.specs = param_specs(client, method, self.params)
        self.entry = entry

    def describe(self) -> dict[str, Any]:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for param in self.params:
            name, kind = param["name"], param["kind"]
            schema = json_schema(self.specs[name])
            if kind == "var_positional":
                schema = {"type": "array", "items": schema}
            elif kind == "var_keyword":
                schema = {"type": "object", "additionalProperties": schema}
            elif "default" in param:
                with contextlib.suppress(Exception):
                    schema = {**schema, "default": jsonable(param["default"])}
            else:
                required.append(name)
            properties[name] = schema
        doc = str(self.entry.get("doc") or "").strip()
        signature = str(self.entry.get("signature") or self.method)
        description = f"{doc}\n\n{self.method}{signature}" if doc else f"{self.method}{signature}"
        if self.kind == "streaming":
            description += "\n\nStreaming: returns the items as a JSON list (bounded)."
        inputs: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            inputs["required"] = required
        return {"name": self.name, "description": description, "inputSchema": inputs}

    def bind(self, arguments: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        known = {p["name"] for p in self.params}
        unknown = sorted(set(arguments) - known)
        if unknown and not any(p["kind"] == "var_keyword" for p in self.params):
            raise InvalidArgument(f"{self.name}: unknown argument(s) {', '.join(unknown)}")
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param in self.params:
            name, kind = param["name"], param["kind"]
            spec = self.specs[name]
            if name not in arguments:
                if kind not in ("var_positional", "var_keyword") and "default" not in param:
                    raise InvalidArgument(f"{self.name}: missing argument {name!r}")
                continue
            value = arguments[name]
            if kind == "positional_only":
                args.append(_decode(spec, value))
            elif kind == "var_positional":
                args.extend(_decode(spec, v) for v in (value or []))
            elif kind == "var_keyword":
                kwargs.update({k: _decode(spec, v) for k, v in (value or {}).items()})
            else:
                kwargs[name] = _decode(spec, value)
        return args, kwargs


class TreeTools:
    """The :class:`~._mcp_protocol.ToolSet` of a client tree.

    Args:
        root: the client tree.
        max_items: a streaming call returns at most this many items (then it is closed).
    """

    def __init__(self, root: DriverClient, *, max_items: int = 100) -> None:
        self.max_items = max_items
        self.tools: dict[str, _Tool] = {}
        self._add(root, "")

    def _add(self, client: DriverClient, prefix: str) -> None:
        for method, entry in client.methods.items():
            if entry.get("kind", "unary") in _TOOL_KINDS:
                name = f"{prefix}{method}"
                self.tools[name] = _Tool(name, client, method, entry)
        for child_name, child in client.children.items():
            self._add(child, f"{prefix}{child_name}.")

    def list_tools(self) -> list[dict[str, Any]]:
        return [tool.describe() for tool in self.tools.values()]

    def call_tool(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        tool = self.tools.get(name)
        if tool is None:
            raise UnknownTool(name)
        try:
            args, kwargs = tool.bind(arguments)
            if tool.kind == "streaming":
                items: list[Any] = []
                stream = tool.client.streaming_call(tool.method, *args, **kwargs)
                try:
                    for item in stream:
                        items.append(item)
                        if len(items) >= self.max_items:
                            break
                finally:
                    close = getattr(stream, "close", None)
                    if callable(close):
                        close()
                value: Any = items
            else:
                value = tool.client.call(tool.method, *args, **kwargs)
        except DriverError as exc:
            remote = exc.remote_type.removeprefix("builtins.")
            return ToolResult(f"{remote}: {exc.message}", is_error=True)
        except TetherError as exc:
            return ToolResult(f"{type(exc).__name__}: {exc}", is_error=True)
        except (ValueError, TypeError) as exc:  # a bad base64 argument, a non-list *args
            return ToolResult(f"{name}: bad argument: {exc}", is_error=True)
        return ToolResult(_text(value))


def _text(value: Any) -> str:
    import json

    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value), ensure_ascii=False)


def serve_stdio(server: McpServer, read_fd: int, write_fd: int) -> None:
    """Run ``server`` until end of input: read ``read_fd``, write answers to ``write_fd``."""
    while chunk := os.read(read_fd, 1 << 16):
        out = server.receive_data(chunk)
        while out:
            written = os.write(write_fd, out)
            out = out[written:]


@contextlib.contextmanager
def _protocol_stdout() -> Iterator[int]:
    """Keep the real stdout for protocol messages; point fd 1 (and sys.stdout) at stderr."""
    sys.stdout.flush()
    kept = os.dup(1)
    os.dup2(2, 1)
    try:
        yield kept
    finally:
        os.dup2(kept, 1)
        os.close(kept)


@contextlib.contextmanager
def _open_tree(
    config: Path | None,
    url: str | None,
    selector: str | None,
    duration: str,
    token: str | None,
    ca: Path | None,
    client_config: Path | None,
) -> Iterator[DriverClient]:
    from tether.client import connect, lease

    if config is not None:
        from ._shell import _local_session as local_session

        with (
            local_session(config) as target,
            connect(target.env["TETHER_HOST"], target.env.get("TETHER_TOKEN")) as root,
        ):
            yield root
    elif url is not None:
        with connect(url, token, ca=ca) as root:
            yield root
    else:
        with lease(
            selector, duration=duration, token=token, ca=ca, config=client_config, progress=False
        ) as root:
            yield root


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--exporter-config", "config", type=_FILE, help="Run this exporter in-process and serve it."
)
@click.option("--connect", "url", metavar="URL", help="Serve a remote exporter (tls://, unix://).")
@click.option("--selector", "-l", metavar="LABELS", help="Lease an exporter matching these labels.")
@click.option("--duration", default="30m", show_default=True, help="Lease duration (--selector).")
@click.option("--client-config", type=_FILE, help="Client config (--selector).")
@click.option("--token", help="Bearer token of the exporter or controller (prefer $TETHER_TOKEN).")
@click.option("--ca", type=_FILE, help="CA certificate to verify the exporter or controller.")
@click.option(
    "--max-items", default=100, show_default=True, help="Items a streaming tool returns at most."
)
def mcp(
    config: Path | None,
    url: str | None,
    selector: str | None,
    duration: str,
    client_config: Path | None,
    token: str | None,
    ca: Path | None,
    max_items: int,
) -> None:
    """Serve a device's methods as MCP tools on stdin/stdout (JSON-RPC 2.0, one per line).

    Each exported unary or streaming method is a tool named NODE.METHOD (`power.on`);
    byte streams are not tools. Diagnostics go to stderr.

    \b
    Examples:
      tether mcp --exporter-config lab.yaml
      tether mcp --selector board=rpi4 --duration 1h
    """
    from tether import __version__

    if sum(given is not None for given in (config, url, selector)) != 1:
        raise click.UsageError(
            "give exactly one of --exporter-config FILE, --connect URL or --selector LABELS"
        )
    try:
        with (
            _protocol_stdout() as out_fd,
            _open_tree(config, url, selector, duration, token, ca, client_config) as root,
        ):
            name = str(getattr(root, "name", "") or "tether")
            server = McpServer(
                TreeTools(root, max_items=max_items),
                name=f"tether {name}",
                version=__version__,
                instructions=f"Tools drive the lab device {name!r}: NODE.METHOD calls METHOD.",
            )
            click.echo(f"tether mcp: serving {name} on stdio", err=True)
            serve_stdio(server, sys.stdin.fileno(), out_fd)
    except TetherError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        sys.exit(130)
