from __future__ import annotations

import asyncio
import re

from tether.driver import Driver, export
from tether.drivers.console import (
    CommandMachine,
    CommandResult,
    ConsoleLink,
    ConsoleOperation,
    ConsoleTail,
    run_marked,
    wait_for,
)

from ._interface import UBootInterface

__all__ = ["UBoot"]

_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


class UBoot(UBootInterface, Driver):
    """U-Boot on a console node (``uses: {console: NODE}``).

    ``interrupt`` waits for the autoboot line and sends the interrupt string (or finds the
    prompt when U-Boot is there already); ``run`` wraps commands in the same markers as
    :class:`~tether.drivers.console.ConsoleShell`, so the status comes from ``$?``.
    ``boot`` runs ``boot_commands`` in order: each but the last must succeed (status 0),
    the last one hands over to the kernel, seen as ``boot_pattern``.

    Config:
        prompt: a regex U-Boot's prompt matches at the end of a line (``=> ``).
        autoboot: a regex of the autoboot line (``Hit any key to stop autoboot``).
        interrupt_string: what stops the countdown (a space; ``\\x03`` also works).
        boot_commands: the commands ``boot`` runs (default: U-Boot's own ``boot``).
        boot_pattern: what U-Boot prints when it hands over (``Starting kernel``).
        command_timeout: seconds each boot command but the last gets.
    """

    prompt: str = r"=> "
    autoboot: str = r"Hit any key to stop autoboot"
    interrupt_string: str = " "
    boot_commands: list[str] = ["boot"]
    boot_pattern: str = r"Starting kernel"
    command_timeout: float = 60.0

    _link: ConsoleLink | None = None

    async def start(self) -> None:
        if not self.boot_commands:
            raise ValueError("UBoot.boot_commands: give at least one command")
        self._link = ConsoleLink.acquire(self.incoming)
        self._machine = CommandMachine(self.prompt)
        self._prompt_re = re.compile(f"(?:{self.prompt})$")
        self._autoboot_re = re.compile(self.autoboot)
        self._boot_re = re.compile(self.boot_pattern)
        # Listen from now on: the autoboot line comes once, right after power-on.
        await self.link.open_soon(self.logger)

    async def prepare_stop(self) -> None:
        if self._link is not None:
            await self._link.release()

    @property
    def link(self) -> ConsoleLink:
        assert self._link is not None, "UBoot is not started"
        return self._link

    @property
    def _what(self) -> str:
        return f"U-Boot {self.node.path or self.node.name}"

    @export
    async def interrupt(self, timeout: float = 60) -> None:  # noqa: ASYNC109 (API)
        """Stop autoboot and get to the prompt (see the interface)."""
        async with self.link.operation() as op:
            await self._interrupt(op, timeout)

    async def _interrupt(self, op: ConsoleOperation, timeout: float) -> None:  # noqa: ASYNC109 (API)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        tail = ConsoleTail()
        # Ctrl-C after a quiet spell: a new prompt from a U-Boot that is there already
        # (a newline would repeat its last command).
        found = await wait_for(
            op, tail, [self._autoboot_re, self._prompt_re], timeout, poke=b"\x03"
        )
        stopped = found == 0  # the countdown, then the prompt: U-Boot for sure
        if stopped:
            await op.send(self.interrupt_string.encode())
            found = await wait_for(
                op, tail, [self._prompt_re], max(0.0, deadline - loop.time()), poke=b"\x03"
            )
        if found is None:
            raise TimeoutError(
                f"{self._what}: neither the autoboot line ({self.autoboot!r}) nor the prompt "
                f"({self.prompt!r}) came within {timeout:g} s; console:\n" + self.link.last_lines()
            )
        if not stopped:
            # A prompt after Ctrl-C only: a marked no-op proves it is U-Boot's.
            left = max(5.0, deadline - loop.time())
            await run_marked(op, self._machine, "true", left, self._what)

    @export
    async def run(self, command: str, timeout: float = 30) -> CommandResult:  # noqa: ASYNC109 (API)
        """Run a command at the prompt; its output and status (see the interface)."""
        async with self.link.operation() as op:
            return await run_marked(op, self._machine, command, timeout, self._what)

    @export
    async def getenv(self, name: str) -> str | None:
        """An environment variable's value; None when it is not set."""
        _check_name(name)
        result = await self.run(f"printenv {name}", self.command_timeout)
        if result.status != 0:
            return None
        prefix = f"{name}="
        for line in result.output.split("\n"):
            if line.startswith(prefix):
                return line[len(prefix) :]
        return None

    @export
    async def setenv(self, name: str, value: str) -> None:
        """Set an environment variable (see the interface)."""
        _check_name(name)
        if "'" in value or "\n" in value or "\r" in value:
            raise ValueError("UBoot.setenv: a value cannot hold a single quote or line break")
        result = await self.run(f"setenv {name} '{value}'", self.command_timeout)
        if result.status != 0:
            raise RuntimeError(
                f"{self._what}: setenv {name} failed (status {result.status}): {result.output}"
            )

    @export
    async def boot(
        self,
        timeout: float = 60,  # noqa: ASYNC109 (API)
        commands: list[str] | None = None,
    ) -> None:
        """Run the boot commands, then wait for the hand-over (see the interface)."""
        if commands is not None and not commands:
            raise ValueError("UBoot.boot: commands is empty (give None for the configured ones)")
        *before, last = commands or self.boot_commands
        async with self.link.operation() as op:
            for command in before:
                result = await run_marked(
                    op, self._machine, command, self.command_timeout, self._what
                )
                if result.status != 0:
                    raise RuntimeError(
                        f"{self._what}: boot command {command!r} failed with status "
                        f"{result.status}:\n{result.output}"
                    )
            await op.send((last + "\n").encode())
            tail = ConsoleTail()
            found = await wait_for(op, tail, [self._boot_re, self._prompt_re], timeout)
            if found == 1:
                raise RuntimeError(
                    f"{self._what}: boot command {last!r} returned to the prompt instead of "
                    "starting the kernel; console:\n" + self.link.last_lines()
                )
            if found is None:
                raise TimeoutError(
                    f"{self._what}: boot command {last!r} did not hand over to the kernel "
                    f"({self.boot_pattern!r}) within {timeout:g} s; console:\n"
                    + self.link.last_lines()
                )


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ValueError(f"invalid U-Boot variable name {name!r}")
