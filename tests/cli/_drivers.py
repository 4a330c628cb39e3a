"""Drivers for the dut tests: every kind of parameter, result and call."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import click
from pydantic import BaseModel

from tether import Driver, DriverClient, Interface, export, export_stream


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Info(BaseModel):
    name: str
    size: int


class Upper:
    """A byte stream answering everything in upper case."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def send(self, data: bytes) -> None:
        await self.queue.put(bytes(data).upper())

    async def receive(self) -> bytes:
        return await self.queue.get()  # b"" after send_eof

    async def send_eof(self) -> None:
        await self.queue.put(b"")


class Gadget(Driver):
    """A test gadget."""

    @export
    async def add(self, a: int, b: int = 1) -> int:
        """Add two integers.

        Returns their sum.
        """
        return a + b

    @export
    async def scale(self, x: float, *, factor: float = 2.0) -> float:
        """Multiply x by factor."""
        return x * factor

    @export
    async def paint(self, color: Color, mode: Literal["fast", "slow"] = "fast") -> str:
        """Paint in a color."""
        return f"{color.value}/{mode}"

    @export
    async def total(self, values: list[int]) -> int:
        """Sum the values."""
        return sum(values)

    @export
    async def tag(
        self, name: str, *, tags: list[str] | None = None, note: str | None = "n"
    ) -> dict[str, Any]:
        """Tag something."""
        return {"name": name, "tags": tags, "note": note}

    @export
    async def hexlify(self, data: bytes) -> str:
        """Hex of the bytes."""
        return data.hex()

    @export
    async def blob(self, size: int) -> bytes:
        """size bytes of 0xAB."""
        return b"\xab" * size

    @export
    async def check(self, enabled: bool, verbose: bool = False) -> list[bool]:
        """Echo two bools."""
        return [enabled, verbose]

    @export
    async def maybe(self, value: int | None) -> str:
        """Say whether value is None."""
        return "none" if value is None else f"int {value}"

    @export
    async def fail(self, message: str = "boom") -> None:
        """Raise ValueError."""
        raise ValueError(message)

    @export
    async def count(self, n: int) -> AsyncIterator[int]:
        """Yield 0..n-1."""
        for i in range(n):
            yield i

    @export
    async def infos(self, n: int = 2) -> AsyncIterator[Info]:
        """Yield n infos."""
        for i in range(n):
            yield Info(name=f"i{i}", size=i)

    @export
    async def info(self) -> Info:
        """One info."""
        return Info(name="gadget", size=3)

    @export
    def set_level(self, level: int) -> int:
        """A sync method with an underscore in its name."""
        return level

    @export
    async def nothing(self) -> None:
        """Return None."""

    @export
    async def varargs(self, first: int, *rest: int, **named: str) -> list[Any]:
        """Echo positional and keyword extras."""
        return [first, list(rest), named]

    @export_stream
    @asynccontextmanager
    async def upper(self) -> AsyncIterator[Upper]:
        """Upper-case everything sent."""
        yield Upper()


class HookInterface(Interface):
    """A gadget with its own command-line commands."""

    name = "tests.hooked"
    version = 1
    client = f"{__name__}.HookClient"

    async def ping(self, count: int) -> str:
        """Ping."""
        raise NotImplementedError


class Hooked(HookInterface, Driver):
    """Has a client with a cli hook."""

    @export
    async def ping(self, count: int) -> str:
        """Ping count times."""
        return "pong" * count

    @export
    async def status(self) -> str:
        """The status."""
        return "generated status"


class HookClient(DriverClient):
    interface = HookInterface

    def cli(self) -> click.Group:
        @click.group()
        def group() -> None:
            pass

        @group.command()
        @click.option("--loud", is_flag=True)
        def hello(loud: bool) -> None:
            """Say hello through ping."""
            text = self.call("ping", 2)
            click.echo(text.upper() if loud else text)

        @group.command()
        def status() -> None:
            """Replaces the generated status."""
            click.echo("custom status")

        return group


class OnlyHookClient(DriverClient):
    cli_replaces_generated = True

    cli = click.Command(
        "whoami",
        callback=lambda: click.echo(click.get_current_context().meta["tether.node"].name),
        help="Print the node's name.",
    )


class OnlyHookInterface(Interface):
    name = "tests.only_hook"
    version = 1
    client = f"{__name__}.OnlyHookClient"


class OnlyHooked(OnlyHookInterface, Driver):
    @export
    async def secret(self) -> str:
        return "hidden"


class BrokenHookClient(DriverClient):
    def cli(self) -> click.Group:
        raise RuntimeError("hook bug")


class BrokenHookInterface(Interface):
    name = "tests.broken_hook"
    version = 1
    client = f"{__name__}.BrokenHookClient"


class BrokenHooked(BrokenHookInterface, Driver):
    @export
    async def works(self) -> str:
        return "still works"
