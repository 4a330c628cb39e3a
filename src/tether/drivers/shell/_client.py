from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import click

from tether.driver import DriverClient

from ._interface import CommandInfo, ShellInterface, ShellOutput
from ._process import CommandFailed

__all__ = ["ShellClient", "ShellResult"]


@dataclass(frozen=True, slots=True)
class ShellResult:
    """A finished command: exit status, collected output, and whether the timeout killed it."""

    command: str
    status: int
    stdout: bytes
    stderr: bytes
    timed_out: bool

    def check(self) -> ShellResult:
        """Return self when the command succeeded.

        Raises:
            CommandFailed: it exited non-zero or timed out (the message quotes its stderr).
        """
        if self.status != 0 or self.timed_out:
            how = "timed out and was killed" if self.timed_out else f"exited with {self.status}"
            tail = self.stderr.decode(errors="replace").strip()[-500:]
            raise CommandFailed(f"{self.command} {how}" + (f": {tail}" if tail else ""))
        return self


class ShellClient(DriverClient):
    """Client of :class:`ShellInterface`: ``run``, ``run_streaming``, ``list_commands``.

    ``dut <node> <command> --param VALUE`` runs a configured command (the ``cli`` hook).
    """

    interface = ShellInterface

    def list_commands(self) -> dict[str, CommandInfo]:
        """The configured commands and their parameters."""
        result: dict[str, CommandInfo] = self.call("list_commands")
        return result

    def run_streaming(self, command: str, /, **args: Any) -> Iterator[ShellOutput]:
        """Run ``command``; yield output chunks as they come, the ``exit`` item last.

        Stopping the iteration early kills the command on the exporter.
        """
        yield from self.streaming_call("run", command, args)

    def run(self, command: str, /, **args: Any) -> ShellResult:
        """Run ``command`` to the end and collect its output (``.check()`` to require success)."""
        out = {"stdout": bytearray(), "stderr": bytearray()}
        status, timed_out = -1, False
        for item in self.run_streaming(command, **args):
            if item.kind == "exit":
                status, timed_out = item.status if item.status is not None else -1, item.timed_out
            else:
                out[item.kind] += item.data
        return ShellResult(command, status, bytes(out["stdout"]), bytes(out["stderr"]), timed_out)

    def cli(self) -> click.Group:
        """One ``dut`` command per configured command, with typed options."""
        group = click.Group(name=self.name)
        for name, info in self.list_commands().items():
            group.add_command(_command(self, name, info))
        return group


_CLICK_TYPES: dict[str, click.ParamType[Any]] = {
    "str": click.STRING,
    "int": click.INT,
    "float": click.FLOAT,
    "bool": click.BOOL,
}


def _command(client: ShellClient, name: str, info: CommandInfo) -> click.Command:
    params: list[click.Parameter] = []
    for param, spec in info.params.items():
        kind = click.Choice(spec.choices) if spec.choices else _CLICK_TYPES[spec.type]
        extra: dict[str, Any] = (
            {"required": True} if spec.required else {"default": spec.default, "show_default": True}
        )
        params.append(
            click.Option(
                [f"--{param.replace('_', '-')}", param],
                type=kind,
                help=spec.description or None,
                **extra,
            )
        )

    def callback(**values: Any) -> None:
        status = 1
        stdout, stderr = sys.stdout.buffer, sys.stderr.buffer
        for item in client.run_streaming(name, **values):
            if item.kind == "exit":
                status = item.status if item.status is not None else 1
                if item.timed_out:
                    click.echo(f"{name}: timed out and was killed", err=True)
            else:
                target = stdout if item.kind == "stdout" else stderr
                target.write(item.data)
                target.flush()
        if status != 0:
            click.get_current_context().exit(status if 0 < status < 256 else 1)

    help_text = info.description or f"Run: {info.template}"
    return click.Command(name=name, callback=callback, params=params, help=help_text)
