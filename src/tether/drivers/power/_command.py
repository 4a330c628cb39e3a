"""``CommandPower``: a power switch driven by shell commands on the exporter host."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated

from pydantic import AfterValidator

from tether.driver import Driver, export
from tether.drivers.shell import ProcessResult, run_command

from ._http import check_regex
from ._interface import PowerInterface, PowerReading

__all__ = ["CommandPower", "parse_reading"]

DEFAULT_READ_PATTERN = r"(?P<voltage>[-+0-9.eE]+)\s+(?P<current>[-+0-9.eE]+)"


class CommandPower(PowerInterface, Driver):
    """Switches power by running configured shell commands (``/bin/sh -c``).

    Config:
        on_command: switches power on; must exit 0.
        off_command: switches power off; must exit 0.
        status_command: reports the state. Without ``status_pattern``, exit status 0 means
            on and 1 means off (anything else is an error). With ``status_pattern``, the
            command must exit 0 and power is on when the pattern matches its stdout.
            Without a status command, ``status`` returns the state last switched to.
        status_pattern: a regular expression searched in the status command's output.
        read_command: prints ``VOLTAGE CURRENT`` (or whatever ``read_pattern`` matches);
            without it ``read`` is not supported.
        read_pattern: a regular expression with the groups ``voltage`` and ``current``.
        timeout: seconds a command may run before it is killed (and the call fails).
        env: variables added to the commands' environment.
    """

    on_command: str
    off_command: str
    status_command: str | None = None
    status_pattern: Annotated[str | None, AfterValidator(check_regex)] = None
    read_command: str | None = None
    read_pattern: Annotated[str, AfterValidator(check_regex)] = DEFAULT_READ_PATTERN
    timeout: float = 10.0
    env: dict[str, str] = {}

    _powered: bool = False

    async def _run(self, what: str, command: str) -> ProcessResult:
        result = await run_command(command, timeout=self.timeout, env=self.env)
        self.logger.debug("%s: %r exited %s", what, command, result.status)
        return result

    @export
    async def on(self) -> None:
        """Switch power on (runs ``on_command``)."""
        (await self._run("on", self.on_command)).check("power on")
        self._powered = True

    @export
    async def off(self) -> None:
        """Switch power off (runs ``off_command``)."""
        (await self._run("off", self.off_command)).check("power off")
        self._powered = False

    @export
    async def status(self) -> bool:
        """True when power is on (see ``status_command``)."""
        if self.status_command is None:
            return self._powered
        result = await self._run("status", self.status_command)
        if self.status_pattern is not None:
            result.check("power status")
            return (
                re.search(self.status_pattern, result.stdout.decode(errors="replace")) is not None
            )
        if result.timed_out:
            result.check("power status")
        if result.status in (0, 1):
            return result.status == 0
        raise ValueError(
            f"power status: command {self.status_command!r} exited with status {result.status} "
            "(expected 0 for on or 1 for off)"
        )

    @export
    async def read(self) -> AsyncIterator[PowerReading]:
        """Yield one sample parsed from ``read_command``'s output."""
        if self.read_command is None:
            raise NotImplementedError("this CommandPower has no read_command configured")
        result = (await self._run("read", self.read_command)).check("power read")
        yield parse_reading(self.read_pattern, result.stdout.decode(errors="replace"))


def parse_reading(pattern: str, text: str) -> PowerReading:
    """Parse a :class:`PowerReading` from ``text`` with ``pattern``'s ``voltage``/``current``.

    Raises:
        ValueError: the pattern does not match, naming the pattern and the text.
    """
    match = re.search(pattern, text)
    if match is None:
        raise ValueError(f"power read: {pattern!r} does not match the output {text[:200]!r}")
    return PowerReading(voltage=float(match["voltage"]), current=float(match["current"]))
