"""``StorageMux``: a storage mux switched by commands on the exporter host.

Any mux with a command-line tool fits: ``usbsdmux /dev/sg0 host``, ``sd-mux-ctrl -e SERIAL
-s``, a GPIO or relay script. Each switch runs its command (``/bin/sh -c``) with a timeout; a
failure or a timeout is a :class:`StorageSwitchError` naming the mux, the mode and the command's
exit status and last stderr. After ``host`` the driver waits (up to ``timeout``) for ``path`` to
appear, since a card reader re-enumerates when the card comes to the host.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

from tether.drivers.shell import run_command

from ._driver import MODES, StorageMuxBase
from ._errors import StorageModeError, StorageSwitchError, StorageSwitchTimeout

__all__ = ["StorageMux", "wait_for_device"]

_MODE_WORD = re.compile(r"\b(host|dut|off)\b", re.IGNORECASE)
_POLL = 0.05  # seconds between looks for the device node after `host`


class StorageMux(StorageMuxBase):
    """A storage mux switched by configured commands (host / dut / off), with a status command.

    Config:
        path: the block device (or file) the mux shows the host, e.g.
            ``/dev/disk/by-id/usb-LinuxAut_sdmux_HS-SD_MMC_000000000367-0:0``.
        host_command, dut_command: switch the card to the exporter host / to the DUT; must
            exit 0.
        off_command: disconnect the card from both (without it ``off`` is refused).
        status_command: prints where the mux is (``host``, ``dut`` or ``off``, the first such
            word counts); without it ``status`` is the mode last switched to.
        initial: a mode to switch to when the driver starts; empty: switch nothing (the mode
            is read with ``status_command``, else taken as ``off``).
        wait_for_path: after ``host``, wait for ``path`` to exist (within ``timeout``).
        timeout: seconds one command (and the wait for ``path``) may take.
        env: variables added to the commands' environment.
    """

    host_command: str
    dut_command: str
    off_command: str | None = None
    status_command: str | None = None
    initial: str = ""
    wait_for_path: bool = True
    timeout: float = 10.0
    env: dict[str, str] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.timeout <= 0:
            raise StorageModeError(f"StorageMux.timeout must be positive (got {self.timeout})")

    def _name(self) -> str:
        return f"storage mux {self.path}"

    async def start(self) -> None:
        wanted = self.initial
        self.initial = wanted or "off"
        await super().start()
        if wanted:
            await self.switch(wanted)
        elif self.status_command is not None:
            self._mode = await self.query()

    async def _run(self, what: str, command: str) -> bytes:
        result = await run_command(command, timeout=self.timeout, env=self.env)
        self.logger.debug("%s: %s: %r exited %s", self._name(), what, command, result.status)
        if result.timed_out:
            raise StorageSwitchTimeout(
                f"{self._name()}: {what}: {command!r} did not finish within {self.timeout} s "
                "and was killed"
            )
        if result.status != 0:
            tail = result.stderr.decode(errors="replace").strip()[-300:]
            raise StorageSwitchError(
                f"{self._name()}: {what}: {command!r} exited with status {result.status}"
                + (f": {tail}" if tail else "")
            )
        return result.stdout

    async def switch(self, mode: str) -> None:
        """Run the mode's command; after ``host``, wait for ``path`` to appear."""
        command = {"host": self.host_command, "dut": self.dut_command, "off": self.off_command}[
            mode
        ]
        if command is None:
            raise StorageModeError(f"{self._name()}: no off_command is configured")
        await self._run(f"switch to {mode}", command)
        await super().switch(mode)
        if mode == "host" and self.wait_for_path:
            await self._wait_for_path()

    async def _wait_for_path(self) -> None:
        await wait_for_device(self.path, self.timeout, self._name())

    async def query(self) -> str:
        """The mode ``status_command`` prints (else the mode last switched to)."""
        if self.status_command is None:
            return await super().query()
        out = (await self._run("status", self.status_command)).decode(errors="replace")
        match = _MODE_WORD.search(out)
        if match is None:
            raise StorageSwitchError(
                f"{self._name()}: status: {self.status_command!r} printed {out.strip()[:200]!r}, "
                f"which names none of {', '.join(MODES)}"
            )
        return match.group(1).lower()


async def wait_for_device(path: str, seconds: float, who: str) -> None:
    """Wait until ``path`` exists (a card reader re-enumerates after a switch to the host).

    Raises:
        StorageSwitchTimeout: it did not appear within ``seconds``.
    """
    try:
        async with asyncio.timeout(seconds):
            # A device node offers no event to wait on: look (one stat) every _POLL seconds.
            while not os.path.exists(path):  # noqa: ASYNC110, ASYNC240
                await asyncio.sleep(_POLL)
    except TimeoutError:
        raise StorageSwitchTimeout(
            f"{who}: switched to host, but {path} did not appear within {seconds} s "
            "(no card in the mux, or another device path?)"
        ) from None
