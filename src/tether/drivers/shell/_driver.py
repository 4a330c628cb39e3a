"""``Shell``: configured commands, run on the exporter host with streamed output.

Only commands named in the config can run. A command is a template whose ``{name}``
placeholders are filled with the call's arguments, each checked against its declared type
and shell-quoted (``shlex.quote``), so an argument is always one word and never shell syntax.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import string
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, model_validator

from tether.driver import Driver, export

from ._interface import CommandInfo, ParamInfo, ShellInterface, ShellOutput
from ._process import Exit, stream_command

__all__ = ["CommandSpec", "ParamSpec", "Shell"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ParamSpec(BaseModel):
    """A command parameter: its type, and a default when it is optional.

    In YAML, a bare type name (``count: int``) is a required parameter of that type.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["str", "int", "float", "bool"] = "str"
    default: str | int | float | bool | None = None
    choices: list[str] | None = None
    description: str = ""

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set

    def convert(self, command: str, name: str, value: Any) -> str:
        """The argument as the word substituted into the command line (before quoting).

        Raises:
            ValueError: the value does not fit the type or choices, naming the parameter.
        """
        where = f"command {command!r}, parameter {name!r}"
        try:
            if self.type == "bool":
                text = str(value).strip().lower()
                if isinstance(value, bool) or text in _TRUE | _FALSE:
                    converted: Any = value if isinstance(value, bool) else text in _TRUE
                else:
                    raise ValueError
                word = "true" if converted else "false"
            elif self.type in ("int", "float"):
                if isinstance(value, bool):
                    raise ValueError
                word = str(_TYPES[self.type](value))
            else:
                if not isinstance(value, str | int | float) or isinstance(value, bool):
                    raise ValueError
                word = str(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected {self.type} (got {value!r})") from None
        if self.choices is not None and word not in self.choices:
            raise ValueError(f"{where}: expected one of {', '.join(self.choices)} (got {word!r})")
        return word


def _param_from_text(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


def _command_from_text(value: Any) -> Any:
    return {"command": value} if isinstance(value, str) else value


class CommandSpec(BaseModel):
    """A configured command. In YAML, a bare string is the command template alone.

    Attributes:
        command: the shell command line; ``{name}`` is replaced by the shell-quoted argument
            ``name`` (``{{`` and ``}}`` are literal braces).
        params: declared parameters; a placeholder not declared here is a required ``str``.
        description: shown by ``dut`` and ``commands()``.
        timeout: seconds before the command is killed (default: the driver's ``timeout``).
        env: variables added for this command (over the driver's ``env``).
    """

    model_config = ConfigDict(extra="forbid")

    command: str
    params: dict[str, Annotated[ParamSpec, BeforeValidator(_param_from_text)]] = {}
    description: str = ""
    timeout: float | None = None
    env: dict[str, str] = {}

    @model_validator(mode="after")
    def _check_placeholders(self) -> CommandSpec:
        used: list[str] = []
        try:
            parsed = list(string.Formatter().parse(self.command))
        except ValueError as exc:
            raise ValueError(f"bad template {self.command!r}: {exc}") from None
        for _, field, spec, conversion in parsed:
            if field is None:
                continue
            if not _NAME.match(field) or spec or conversion:
                raise ValueError(
                    f"placeholder {{{field}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}} in {self.command!r}: expected a plain "
                    "{name} (letters, digits, _ and -)"
                )
            used.append(field)
        unused = sorted(set(self.params) - set(used))
        if unused:
            raise ValueError(f"parameter(s) {', '.join(unused)} not used in {self.command!r}")
        for name in used:
            self.params.setdefault(name, ParamSpec())
        return self

    def render(self, name: str, args: dict[str, Any]) -> str:
        """The command line with every placeholder replaced by its quoted argument.

        Raises:
            ValueError: an argument is unknown, missing or of the wrong type.
        """
        unknown = sorted(set(args) - set(self.params))
        if unknown:
            raise ValueError(
                f"command {name!r} has no parameter {', '.join(map(repr, unknown))} "
                f"(parameters: {', '.join(self.params) or 'none'})"
            )
        words: dict[str, str] = {}
        for param, spec in self.params.items():
            if param in args:
                words[param] = spec.convert(name, param, args[param])
            elif spec.required:
                raise ValueError(f"command {name!r}: missing argument {param!r}")
            else:
                words[param] = spec.convert(name, param, spec.default)
        return self.command.format_map({k: shlex.quote(v) for k, v in words.items()})

    def info(self, default_timeout: float | None) -> CommandInfo:
        return CommandInfo(
            description=self.description,
            template=self.command,
            params={
                name: ParamInfo(
                    type=spec.type,
                    required=spec.required,
                    default=spec.default,
                    choices=spec.choices,
                    description=spec.description,
                )
                for name, spec in self.params.items()
            },
            timeout=self.timeout if self.timeout is not None else default_timeout,
        )


def _check_names(value: dict[str, CommandSpec]) -> dict[str, CommandSpec]:
    for name in value:
        if not _NAME.match(name):
            raise ValueError(f"command name {name!r}: expected letters, digits, _ and -")
    return value


class Shell(ShellInterface, Driver):
    """Runs configured commands on the exporter host (``/bin/sh -c``).

    Config:
        commands: name -> :class:`CommandSpec` (or just its command template).
        timeout: default seconds before a command is killed (``null``: no limit).
        env: variables added to every command's environment.
        cwd: working directory of the commands (default: the exporter's).
    """

    commands: Annotated[
        dict[str, Annotated[CommandSpec, BeforeValidator(_command_from_text)]],
        AfterValidator(_check_names),
    ] = {}
    timeout: float | None = 60.0
    env: dict[str, str] = {}
    cwd: str | None = None

    def _spec(self, command: str) -> CommandSpec:
        try:
            return self.commands[command]
        except KeyError:
            raise ValueError(
                f"no command {command!r} (configured: {', '.join(sorted(self.commands)) or 'none'})"
            ) from None

    @export
    async def run(
        self, command: str, args: dict[str, Any] | None = None
    ) -> AsyncIterator[ShellOutput]:
        """Run a configured command with ``args``; stream its output, then its exit status.

        Stopping the call (the client stops reading, or the session ends) kills the command.
        """
        spec = self._spec(command)
        line = spec.render(command, dict(args or {}))
        timeout = spec.timeout if spec.timeout is not None else self.timeout
        self.logger.info("run %s: %s", command, line)
        process = stream_command(line, timeout=timeout, env={**self.env, **spec.env}, cwd=self.cwd)
        async with contextlib.aclosing(process) as items:
            async for item in items:
                if isinstance(item, Exit):
                    if item.timed_out:
                        self.logger.warning("%s: killed after %s s", command, timeout)
                    yield ShellOutput(kind="exit", status=item.status, timed_out=item.timed_out)
                else:
                    kind: Literal["stdout", "stderr"] = (
                        "stdout" if item.stream == "stdout" else "stderr"
                    )
                    yield ShellOutput(kind=kind, data=item.data)

    @export
    async def list_commands(self) -> dict[str, CommandInfo]:
        """The configured commands, their parameters and timeouts."""
        return {name: spec.info(self.timeout) for name, spec in self.commands.items()}
