from __future__ import annotations

import asyncio
import re

from tether.driver import Driver, export

from ._expect import run_marked, wait_for
from ._interface import ConsoleShellInterface
from ._link import ConsoleLink, ConsoleOperation
from ._machine import CommandMachine, ConsoleTail
from ._result import CommandResult

__all__ = ["ConsoleShell"]


class ConsoleShell(ConsoleShellInterface, Driver):
    """A shell on a console node (``uses: {console: NODE}``: a serial port, a QEMU board's
    console, any :class:`~tether.drivers.serial.SerialInterface`).

    ``run`` wraps the command in markers (see :mod:`tether.drivers.console`'s machine), so
    the output comes back without the echo, ANSI sequences or kernel log lines, with the
    command's exit status. Before the first command it finds the prompt, logging in when
    the console shows a login prompt.

    Config:
        prompt: a regex the shell's prompt matches at the end of a line (``[#$] ``).
        login: the user to log in as when a login prompt shows (empty: never log in).
        password: the password, when a password prompt shows.
        login_prompt, password_prompt: regexes of those prompts.
        newline: what ends a line sent to the console.
        login_timeout: seconds the login and prompt search get (``wait_ready``'s default
            for ``run``).
        drop_kernel_messages: leave kernel log lines (``[   12.345678] ...``) out of the
            output, also one printed into the middle of a line. Lines a command prints in
            that form (``dmesg``) go too: set it false for those, or use ``dmesg -t``.
    """

    prompt: str = r"[#$] "
    login: str = ""
    password: str = ""
    login_prompt: str = r"login: "
    password_prompt: str = r"[Pp]assword: "
    newline: str = "\n"
    login_timeout: float = 60.0
    drop_kernel_messages: bool = True

    _link: ConsoleLink | None = None
    _ready_epoch: int = -1  # the link's epoch when the prompt was last found

    async def start(self) -> None:
        self._link = ConsoleLink.acquire(self.incoming)
        self._machine = CommandMachine(
            self.prompt, newline=self.newline, drop_kernel_lines=self.drop_kernel_messages
        )
        self._prompt_re = re.compile(f"(?:{self.prompt})$")
        self._login_re = re.compile(f"(?:{self.login_prompt})$")
        self._password_re = re.compile(f"(?:{self.password_prompt})$")
        self._incorrect_re = re.compile(r"Login incorrect|Authentication failure")

    async def prepare_stop(self) -> None:
        if self._link is not None:
            await self._link.release()

    @property
    def link(self) -> ConsoleLink:
        assert self._link is not None, "ConsoleShell is not started"
        return self._link

    @export
    async def run(self, command: str, timeout: float = 30) -> CommandResult:  # noqa: ASYNC109 (the timeout is part of the API)
        """Run one command line; its output and exit status (see the interface)."""
        async with self.link.operation() as op:
            if self._ready_epoch != self.link.epoch:  # first command, or the board restarted
                await self._wait_ready(op, max(timeout, self.login_timeout))
            try:
                return await run_marked(op, self._machine, command, timeout, self._what)
            except TimeoutError:
                self._ready_epoch = -1
                raise

    @export
    async def wait_ready(
        self,
        timeout: float = 60,  # noqa: ASYNC109 (the timeout is part of the API)
        poke: bool = True,
    ) -> None:
        """Find the prompt, logging in when asked (see the interface)."""
        async with self.link.operation() as op:
            self._ready_epoch = -1
            await self._wait_ready(op, timeout, poke=poke)

    @property
    def _what(self) -> str:
        return f"console shell {self.node.path or self.node.name}"

    async def _wait_ready(self, op: ConsoleOperation, timeout: float, *, poke: bool = True) -> None:  # noqa: ASYNC109 (the timeout is part of the API)
        deadline = _now() + timeout
        tail = ConsoleTail()
        patterns = [self._prompt_re, self._login_re, self._password_re, self._incorrect_re]
        newline = self.newline.encode()
        nudge: bytes | None = newline if poke else None
        sent_login = False  # our newline may have answered a login prompt we never saw
        while (left := deadline - _now()) > 0:
            found = await wait_for(op, tail, patterns, left, poke=nudge, poke_every=1.0)
            nudge = None
            if found is None:
                break
            if found == 0:
                # Looks like a prompt: a marked no-op proves it is the shell.
                try:
                    await run_marked(
                        op, self._machine, "true", max(1.0, deadline - _now()), self._what
                    )
                except TimeoutError:
                    nudge = newline
                    continue
                self._ready_epoch = self.link.epoch
                return
            if found == 1:
                if not self.login:
                    raise PermissionError(
                        f"{self._what}: the console asks to log in and no `login` is "
                        "configured; console:\n" + self.link.last_lines()
                    )
                await op.send((self.login + self.newline).encode())
                sent_login = True
            elif found == 2:
                # A password prompt for a user we did not give (our newline): skip it.
                secret = self.password if sent_login else ""
                await op.send((secret + self.newline).encode())
            elif sent_login:
                raise PermissionError(
                    f"{self._what}: login as {self.login!r} was refused; console:\n"
                    + self.link.last_lines()
                )
            # else: the refusal of a login we did not make; the login prompt comes again
        raise TimeoutError(
            f"{self._what}: no prompt matching {self.prompt!r} within {timeout:g} s; "
            "console:\n" + self.link.last_lines()
        )


def _now() -> float:
    return asyncio.get_running_loop().time()
