from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import BaseModel

from tether.driver import Interface

__all__ = ["CommandInfo", "ParamInfo", "ShellInterface", "ShellOutput"]


class ShellOutput(BaseModel):
    """One item of a command's streamed output.

    ``kind`` is ``"stdout"`` or ``"stderr"`` (``data`` holds the bytes), or ``"exit"``, always
    last (``status``: the exit status, negative when killed by a signal; ``timed_out``: the
    timeout killed it).
    """

    kind: Literal["stdout", "stderr", "exit"]
    data: bytes = b""
    status: int | None = None
    timed_out: bool = False


class ParamInfo(BaseModel):
    """A configured command's parameter."""

    type: Literal["str", "int", "float", "bool"]
    required: bool
    default: str | int | float | bool | None = None
    choices: list[str] | None = None
    description: str = ""


class CommandInfo(BaseModel):
    """A configured command, as clients see it."""

    description: str
    template: str
    params: dict[str, ParamInfo]
    timeout: float | None


class ShellInterface(Interface):
    """Configured commands run on the exporter host."""

    name = "tether.shell"
    version = 1
    client = "tether.drivers.shell.ShellClient"

    @abstractmethod
    def run(self, command: str, args: dict[str, Any] | None = None) -> AsyncIterator[ShellOutput]:
        """Run a configured command; stream its output, then its exit status."""

    @abstractmethod
    async def list_commands(self) -> dict[str, CommandInfo]:
        """The configured commands and their parameters."""
