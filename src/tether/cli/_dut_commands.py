"""The ``dut`` command tree, generated from a client tree at run time.

Theory of operation. Every node becomes a click group holding

* one command per exported method, with arguments and options generated from the method's
  signature in the driver report (:mod:`._dut_types` reads the types): parameters without a
  default are positional arguments, parameters with a default and keyword-only parameters are
  ``--options``;
* ``forward`` and ``console`` when the node has byte-stream methods (unless a method or child
  already has that name);
* the commands of the client class's ``cli`` hook, replacing generated ones of the same name;
* a subgroup per child node (a child hides a method of the same name).

Errors are translated once, in :func:`_call_errors`: arguments the exporter rejects become
usage errors (exit status 2), driver exceptions print their remote type and message (exit 1).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import typing
from collections.abc import Iterator
from typing import Any, BinaryIO

import click
from click.core import ParameterSource

from tether.driver import DriverClient
from tether.errors import (
    DriverError,
    InvalidArgument,
    LeaseEnded,
    MethodNotFound,
    NodeNotFound,
    SessionLost,
    TetherError,
)

from ._dut_output import write_value
from ._dut_stdio import attach, raw_terminal
from ._dut_types import ANY, SpecType, TypeSpec, spec_from_annotation, spec_from_text

__all__ = ["NODE_META_KEY", "build_dut", "node_group"]

#: ``click.get_current_context().meta[NODE_META_KEY]`` is the node a hook command runs for.
NODE_META_KEY = "tether.node"
_POSITIONAL = ("positional_only", "positional_or_keyword")
_KIND_NOTE = {
    "streaming": "Streaming: items print as they arrive (Ctrl-C stops).",
    "byte_stream": "Byte stream: stdin goes to the device, its output to stdout.",
}


def build_dut(root: DriverClient) -> click.Group:
    """The ``dut`` command for a client tree (``dut`` alone lists the tree)."""
    group = node_group(root, name="dut", is_root=True)
    group.params.insert(
        0,
        click.Option(
            ["--json", "as_json"],
            is_flag=True,
            help="Print results as JSON (one line per value; bytes as base64).",
        ),
    )
    return group


def node_group(
    client: DriverClient, *, name: str | None = None, is_root: bool = False
) -> NodeGroup:
    """The click group of one node and, recursively, its children."""
    group = NodeGroup(client, name=name or client.name, is_root=is_root)
    hidden_generated = bool(getattr(type(client), "cli_replaces_generated", False))
    if not hidden_generated:
        for method, entry in client.methods.items():
            group.add_command(method_command(client, method, entry))
        _add_extras(group, client)
    for command in _hook_commands(client):
        group.add_command(command)
    for child in client.children.values():
        group.add_command(node_group(child))
    return group


class NodeGroup(click.Group):
    """A node: its methods, extras, hook commands and children."""

    def __init__(self, client: DriverClient, *, name: str, is_root: bool) -> None:
        self.client = client
        self.is_root = is_root
        summary = client.description or _interface_label(client)
        if is_root:
            help_text = (
                "Drive the device of this shell (TETHER_HOST). Without a command, list the "
                "driver tree.\n\nEvery node is a command group; every exported method a "
                "command: `dut power on`, `dut board serial console`, `dut NODE METHOD --help`."
            )
        else:
            help_text = summary or f"Node {client.name}."
        super().__init__(
            name=name,
            help=help_text,
            short_help=summary or None,
            invoke_without_command=True,
            callback=self._alone,
            context_settings={"help_option_names": ["-h", "--help"]},
        )

    def _alone(self, **_: Any) -> None:
        """Without a subcommand: the root lists the tree, a node shows its commands."""
        ctx = click.get_current_context()
        if ctx.invoked_subcommand is not None:
            return
        if self.is_root:
            from ._dut_tree import print_tree  # rich costs import time: only when listing

            print_tree(self.client)
        else:
            click.echo(ctx.get_help())

    def invoke(self, ctx: click.Context) -> Any:
        ctx.meta[NODE_META_KEY] = self.client
        if self.is_root:
            ctx.meta["tether.json"] = bool(ctx.params.get("as_json"))
        return super().invoke(ctx)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """Exact names first; ``read-voltage`` also finds the method ``read_voltage``."""
        return self.commands.get(cmd_name) or self.commands.get(cmd_name.replace("-", "_"))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """As click's, but an unknown command on a node that fell back to the generic
        client says which client class was not loaded and how to allow it."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            reason = self.client.unavailable
            if reason is None:
                raise
            methods = ", ".join(sorted(self.client.methods)) or "none"
            raise click.UsageError(
                f"{exc.message} Node {self.client.name!r} has the generic client: {reason}. "
                f"Its exported methods are commands still: {methods}.",
                ctx,
            ) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Methods first, then child nodes, each under its own heading."""
        methods: list[tuple[str, str]] = []
        nodes: list[tuple[str, str]] = []
        for name in self.list_commands(ctx):
            command = self.commands[name]
            if command.hidden:
                continue
            entry = (name, command.get_short_help_str(limit=formatter.width - 6 - len(name)))
            (nodes if isinstance(command, NodeGroup) else methods).append(entry)
        if methods:
            with formatter.section("Commands"):
                formatter.write_dl(methods)
        if nodes:
            with formatter.section("Nodes"):
                formatter.write_dl(nodes)


def _interface_label(client: DriverClient) -> str:
    interface = client.report.get("interface") or ""
    if not interface:
        return ""
    return f"{interface} v{client.report.get('version', 0)}"


# -- generated method commands ----------------------------------------------------------------


class MethodCommand(click.Command):
    """A command calling one exported method; help lists the typed arguments."""

    def __init__(self, *, arguments: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.argument_help = arguments

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.argument_help:
            with formatter.section("Arguments"):
                formatter.write_dl(self.argument_help)
        super().format_options(ctx, formatter)


def method_command(client: DriverClient, method: str, entry: dict[str, Any]) -> MethodCommand:
    """The command for one exported method, from its report entry."""
    params: list[dict[str, Any]] = list(entry.get("params", []))
    specs = _param_specs(client, method, params)
    kind = entry.get("kind", "unary")
    click_params, plan, argument_help = _click_params(params, specs)
    if kind != "byte_stream" and not any(p["name"] == "json" for p in params):
        click_params.append(
            click.Option(["--json", "as_json"], is_flag=True, help="Print results as JSON.")
        )

    def callback(**values: Any) -> int | None:
        ctx = click.get_current_context()
        as_json = bool(values.pop("as_json", False)) or bool(ctx.meta.get("tether.json"))
        args, kwargs = _arguments(ctx, plan, values)
        with _call_errors(ctx, client, method):
            return _run(client, method, kind, args, kwargs, as_json=as_json)

    doc = entry.get("doc") or ""
    signature = str(entry.get("signature") or method).replace("NoneType", "None")
    signature = signature.replace("typing.", "").replace("collections.abc.", "")
    help_parts = [doc] if doc else []
    if kind in _KIND_NOTE:
        help_parts.append(_KIND_NOTE[kind])
    help_parts.append(f"\b\nSignature: {signature}")
    return MethodCommand(
        name=method,
        callback=callback,
        params=click_params,
        help="\n\n".join(help_parts),
        short_help=doc.split("\n", 1)[0] if doc else None,
        arguments=argument_help,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def _param_specs(
    client: DriverClient, method: str, params: list[dict[str, Any]]
) -> dict[str, TypeSpec]:
    """Types from the typed client's interface when it declares the method, else the report."""
    hints: dict[str, Any] = {}
    interface = getattr(type(client), "interface", None)
    fn = getattr(interface, method, None) if interface is not None else None
    if fn is not None:
        with contextlib.suppress(Exception):  # unresolvable hints: the report text still works
            hints = typing.get_type_hints(fn, include_extras=True)
    specs: dict[str, TypeSpec] = {}
    for param in params:
        name = param["name"]
        if name in hints:
            specs[name] = spec_from_annotation(hints[name])
        elif isinstance(param.get("choices"), list) and param["choices"]:
            specs[name] = TypeSpec(
                "choice", str(param.get("type")), choices=tuple(param["choices"])
            )
        else:
            specs[name] = spec_from_text(param.get("type")) if "type" in param else ANY
    return specs


# A plan step: (parameter name, report kind, how it goes into the call).
_Step = tuple[str, str, str]


def _click_params(
    params: list[dict[str, Any]], specs: dict[str, TypeSpec]
) -> tuple[list[click.Parameter], list[_Step], list[tuple[str, str]]]:
    required_positional = [
        p["name"] for p in params if p["kind"] in _POSITIONAL and "default" not in p
    ]
    greedy_ok = not any(p["kind"] == "var_positional" for p in params)
    out: list[click.Parameter] = []
    plan: list[_Step] = []
    help_rows: list[tuple[str, str]] = []
    for param in params:
        name, kind = param["name"], param["kind"]
        spec = specs[name]
        dest = f"p_{name}"  # never collides with --json or click internals
        option = "--" + name.replace("_", "-")
        default_note = f" (default: {param['default']!r})" if "default" in param else ""
        if kind in _POSITIONAL and "default" not in param:
            greedy = spec.kind == "list" and greedy_ok and name == required_positional[-1]
            item = spec.item if greedy and spec.item is not None else spec
            out.append(
                click.Argument(
                    [dest],
                    type=SpecType(item),
                    nargs=-1 if greedy else 1,
                    required=True,
                    metavar=name.upper() + ("..." if greedy else ""),
                )
            )
            plan.append((name, kind, "greedy" if greedy else "arg"))
            help_rows.append((name.upper(), _type_help(spec)))
        elif kind == "var_positional":
            out.append(
                click.Argument(
                    [dest], type=SpecType(spec), nargs=-1, metavar=f"[{name.upper()}]..."
                )
            )
            plan.append((name, kind, "star"))
            help_rows.append((f"{name.upper()}...", _type_help(spec)))
        elif kind == "var_keyword":
            out.append(
                click.Option(
                    [option, dest],
                    multiple=True,
                    type=_KeyValue(spec),
                    metavar="KEY=VALUE",
                    help=f"Extra keyword argument, repeatable; values are {spec.label}.",
                )
            )
            plan.append((name, kind, "starstar"))
        elif spec.kind == "bool":
            negative = "--no-" + name.replace("_", "-")
            out.append(
                click.Option(
                    [f"{option}/{negative}", dest],
                    default=None,
                    required="default" not in param,
                    help=f"bool{default_note}",
                )
            )
            plan.append((name, kind, "opt"))
        elif (items := _list_items(spec)) is not None:
            out.append(
                click.Option(
                    [option, dest],
                    multiple=True,
                    type=SpecType(items),
                    required="default" not in param,
                    help=f"{spec.label}, repeat the option for each item{default_note}",
                )
            )
            plan.append((name, kind, "multi"))
        else:
            out.append(
                click.Option(
                    [option, dest],
                    type=SpecType(spec),
                    required="default" not in param,
                    help=f"{_type_help(spec)}{default_note}",
                )
            )
            plan.append((name, kind, "opt"))
    return out, plan, help_rows


def _list_items(spec: TypeSpec) -> TypeSpec | None:
    """The item type of a ``list[X]`` or ``list[X] | None`` parameter (a repeated option)."""
    if spec.kind == "optional" and spec.item is not None:
        spec = spec.item
    return spec.item if spec.kind == "list" else None


def _type_help(spec: TypeSpec) -> str:
    if spec.kind == "choice":
        return "one of " + ", ".join(str(v) for v in spec.choices)
    if spec.kind == "bytes":
        return "bytes: text, hex:..., b64:..., @FILE or @- (stdin)"
    if spec.kind == "optional" and spec.item is not None:
        return f"{_type_help(spec.item)}, or none"
    return spec.label


class _KeyValue(click.ParamType[Any]):
    name = "key=value"

    def __init__(self, spec: TypeSpec) -> None:
        self.value_type = SpecType(spec)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        key, sep, text = str(value).partition("=")
        if not sep or not key:
            self.fail(f"expected KEY=VALUE, got {value!r}", param, ctx)
        return key, self.value_type.convert(text, param, ctx)


def _arguments(
    ctx: click.Context, plan: list[_Step], values: dict[str, Any]
) -> tuple[list[Any], dict[str, Any]]:
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    skipped_positional: str | None = None
    for name, kind, how in plan:
        dest = f"p_{name}"
        value = values[dest]
        given = ctx.get_parameter_source(dest) is not ParameterSource.DEFAULT
        if how == "arg":
            args.append(value)
        elif how == "greedy":
            args.append(list(value))
        elif how == "star":
            if value and skipped_positional:
                raise click.UsageError(
                    f"--{skipped_positional.replace('_', '-')} must be given to pass {name}",
                    ctx,
                )
            args.extend(value)
        elif how == "starstar":
            kwargs.update(dict(value))
        elif not given:
            if kind in _POSITIONAL:
                skipped_positional = skipped_positional or name
        elif kind == "positional_only" or (kind in _POSITIONAL and _star_given(plan, values)):
            if skipped_positional:
                raise click.UsageError(
                    f"--{skipped_positional.replace('_', '-')} must be given to pass "
                    f"--{name.replace('_', '-')}",
                    ctx,
                )
            args.append(list(value) if how == "multi" else value)
        else:
            kwargs[name] = list(value) if how == "multi" else value
    return args, kwargs


def _star_given(plan: list[_Step], values: dict[str, Any]) -> bool:
    return any(how == "star" and values[f"p_{name}"] for name, _, how in plan)


def _run(
    client: DriverClient,
    method: str,
    kind: str,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    as_json: bool,
) -> int | None:
    """Run the call and print its result; a command's result gives the exit status."""
    out = _binary_stdout()
    if kind == "streaming":
        for item in client.streaming_call(method, *args, **kwargs):
            write_value(out, item, as_json=as_json, item=True)
    elif kind == "byte_stream":
        with client.stream(method, *args, **kwargs) as stream:
            attach(stream, _binary_stdin(), out)
    else:
        value = client.call(method, *args, **kwargs)
        result = _command_result(value)
        if result is None or as_json:
            write_value(out, value, as_json=as_json)
        else:
            write_value(out, result[0] or None, as_json=False)
        return None if result is None else result[1]
    return None


def _command_result(value: Any) -> tuple[str, int] | None:
    """``(output, status)`` of a command's result (a ``CommandResult``, or its plain form
    from an untyped client), so ``dut NODE run CMD`` exits with the command's status."""
    from tether.drivers.console import CommandResult

    if isinstance(value, CommandResult):
        return value.output, value.status
    if (
        isinstance(value, dict)
        and set(value) == {"output", "status"}
        and isinstance(value["output"], str)
        and isinstance(value["status"], int)
    ):
        return value["output"], value["status"]
    return None


def _binary_stdout() -> BinaryIO:
    return typing.cast(BinaryIO, sys.stdout.buffer)  # sys.stdout: click's runner swaps it


def _binary_stdin() -> BinaryIO:
    return typing.cast(BinaryIO, sys.stdin.buffer)


@contextlib.contextmanager
def _call_errors(ctx: click.Context, client: DriverClient, method: str) -> Iterator[None]:
    """Translate call errors: bad arguments are usage errors (2), the rest exit 1."""
    try:
        yield
    except InvalidArgument as exc:
        raise click.UsageError(exc.message, ctx) from None
    except (MethodNotFound, NodeNotFound) as exc:
        raise click.UsageError(exc.message, ctx) from None
    except DriverError as exc:
        remote_type = exc.remote_type.removeprefix("builtins.")
        raise click.ClickException(f"{remote_type}: {exc.message}") from None
    except (LeaseEnded, SessionLost) as exc:
        raise click.ClickException(str(exc)) from None  # says it all: "the lease L expired..."
    except TetherError as exc:
        raise click.ClickException(f"{type(exc).__name__}: {exc}") from None


# -- extras: forward, console -------------------------------------------------------------


def _add_extras(group: NodeGroup, client: DriverClient) -> None:
    from tether.client import byte_stream_methods

    streams = byte_stream_methods(client)
    if not streams:
        return
    taken = set(client.methods) | set(client.children)
    if "forward" not in taken:
        group.add_command(_forward_command(client, streams))
    if "console" not in taken:
        group.add_command(_console_command(client, streams))


def _method_option(streams: list[str]) -> click.Option:
    return click.Option(
        ["--method", "-m"],
        type=click.Choice(streams),
        default=streams[0] if len(streams) == 1 else None,
        required=len(streams) > 1,
        show_default=len(streams) == 1,
        help="The byte-stream method to use.",
    )


def _forward_command(client: DriverClient, streams: list[str]) -> click.Command:
    from ._dut_forward import forward_callback

    return click.Command(
        name="forward",
        callback=lambda method, local_port, host: forward_callback(
            client, method, local_port, host
        ),
        params=[
            click.Argument(
                ["local_port"], type=click.IntRange(0, 65535), default=0, required=False
            ),
            _method_option(streams),
            click.Option(
                ["--host"],
                default="127.0.0.1",
                show_default=True,
                help="Local address to listen on.",
            ),
        ],
        help=(
            "Forward a local TCP port to this node's byte stream (like ssh -L).\n\n"
            "Each connection to 127.0.0.1:LOCAL_PORT opens a new stream. LOCAL_PORT 0 (the "
            "default) picks a free port. The first line printed names the bound port. "
            "Ctrl-C stops."
        ),
        short_help="Forward a local TCP port to a byte stream.",
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def _console_command(client: DriverClient, streams: list[str]) -> click.Command:
    def callback(method: str) -> None:
        ctx = click.get_current_context()
        stdin = _binary_stdin()
        with (
            _call_errors(ctx, client, method),
            client.stream(method) as stream,
            raw_terminal(stdin) as is_tty,
        ):
            if is_tty:
                click.echo(f"Connected to {client.name}.{method}; Ctrl-] to quit.\r", err=True)
            attach(stream, stdin, _binary_stdout(), escape=is_tty)

    return click.Command(
        name="console",
        callback=callback,
        params=[_method_option(streams)],
        help=(
            "Attach this terminal to the node's byte stream: keys go to the device, its output "
            "to the screen. On a terminal, raw mode; Ctrl-] quits. Otherwise stdin and stdout "
            "are piped through."
        ),
        short_help="Attach the terminal to a byte stream (Ctrl-] quits).",
        context_settings={"help_option_names": ["-h", "--help"]},
    )


# -- the driver's own commands ------------------------------------------------------------------


def _hook_commands(client: DriverClient) -> list[click.Command]:
    """Commands from the client class's ``cli`` hook (a method or a click command attribute).

    A hook that fails is reported on stderr and skipped: the generated commands still work.
    """
    hook = inspect.getattr_static(type(client), "cli", None)
    if hook is None:
        return []
    if isinstance(hook, click.Command):
        command: Any = hook
    else:
        try:
            command = getattr(client, "cli")()  # noqa: B009 (hook lookup)
        except Exception as exc:
            command = exc
        if not isinstance(command, click.Command):
            problem = (
                f"raised {type(command).__name__}: {command}"
                if isinstance(command, Exception)
                else f"returned {type(command).__name__}, not a click command or group"
            )
            click.echo(f"dut: {type(client).__qualname__}.cli() {problem}; skipped", err=True)
            return []
    if isinstance(command, click.Group):
        return list(command.commands.values())  # a group's commands join the node's
    return [command]
