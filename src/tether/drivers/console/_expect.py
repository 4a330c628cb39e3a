"""The thin I/O loop around the sans-IO machine: feed console bytes, wait for events.

Shared by :class:`~tether.drivers.console.ConsoleShell` and
:class:`~tether.drivers.uboot.UBoot`, which differ only in their prompts and greetings.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

from ._link import ConsoleOperation
from ._machine import CommandFinished, CommandMachine, ConsoleTail, MachineState, PromptFound
from ._result import CommandResult

__all__ = ["run_marked", "wait_for"]

_RESYNC = 10.0


async def wait_for(
    op: ConsoleOperation,
    tail: ConsoleTail,
    patterns: Sequence[re.Pattern[str]],
    timeout: float,  # noqa: ASYNC109 (the timeout is part of the API)
    *,
    poke: bytes | None = None,
    poke_every: float = 2.0,
) -> int | None:
    """Wait until the console text matches one of ``patterns``; its index, None on timeout.

    ``tail`` may hold text already; what matched is consumed from it. With ``poke``, those
    bytes are sent whenever the console was quiet for ``poke_every`` seconds (a newline
    wakes a shell whose prompt went by before we listened; not at once, which would answer
    a login prompt that is on its way).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        for index, pattern in enumerate(patterns):
            if tail.search(pattern) is not None:
                return index
        left = deadline - loop.time()
        if left <= 0:
            return None
        data = await op.receive(min(left, poke_every) if poke is not None else left)
        if data:
            tail.receive_data(data)
        elif poke is not None and loop.time() < deadline:
            await op.send(poke)


async def run_marked(
    op: ConsoleOperation,
    machine: CommandMachine,
    command: str,
    timeout: float,  # noqa: ASYNC109 (the timeout is part of the API)
    what: str,
) -> CommandResult:
    """Run ``command`` with markers (see :mod:`._machine`); its output and status.

    Raises:
        TimeoutError: no end marker and prompt within ``timeout``; the command was
            interrupted (Ctrl-C) and the shell resynchronised, the message says whether.
    """
    machine.state = MachineState.IDLE
    await op.send(machine.command(command))
    result = await _until_prompt(op, machine, timeout)
    if result is not None:
        return result
    await op.send(machine.resync())
    again = await _until_prompt(op, machine, _RESYNC)
    state = (
        "interrupted with Ctrl-C; the console takes commands again"
        if again is not None
        else f"and the console did not answer within {_RESYNC:g} s after Ctrl-C"
    )
    raise TimeoutError(
        f"{what}: {command!r} did not finish within {timeout:g} s ({state}); console:\n"
        + op.link.last_lines()
    )


async def _until_prompt(
    op: ConsoleOperation,
    machine: CommandMachine,
    timeout: float,  # noqa: ASYNC109 (the timeout is part of the API)
) -> CommandResult | None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    finished: CommandFinished | None = None
    while True:
        while (event := machine.next_event()) is not None:
            if isinstance(event, CommandFinished):
                finished = event
            elif isinstance(event, PromptFound) and finished is not None:
                return CommandResult(output=finished.output, status=finished.status)
        left = deadline - loop.time()
        if left <= 0:
            return None
        data = await op.receive(left)
        if data:
            machine.receive_data(data)
