from __future__ import annotations

import asyncio
from typing import Any

from tether.driver import Driver, ServiceNotFound, export
from tether.drivers.console import ConsoleLink, ConsoleShellInterface
from tether.drivers.power import PowerInterface
from tether.drivers.storage import StorageMuxInterface
from tether.drivers.uboot import UBootInterface
from tether.errors import TetherError

from ._graph import UNKNOWN, BootGraph, Step
from ._interface import BootStrategyInterface

__all__ = ["BootStepFailed", "BootStrategy"]


class BootStepFailed(TetherError, RuntimeError):
    """A step of a transition failed; the message names it and shows the console's last
    lines. The board's state is ``unknown`` afterwards (the next transition power cycles)."""


class BootStrategy(BootStrategyInterface, Driver):
    """A board's states (``off``, ``uboot`` when it has U-Boot, ``shell``) and the steps
    between them, built from the nodes routed to it with ``uses:``:

    * ``power`` (required): a :class:`~tether.drivers.power.PowerInterface`;
    * ``shell`` (required): a :class:`~tether.drivers.console.ConsoleShellInterface`;
    * ``uboot``: a :class:`~tether.drivers.uboot.UBootInterface` (adds the ``uboot`` state);
    * ``console``: the board's console, listened to from before power-on (and quoted when a
      step fails);
    * ``storage``: a :class:`~tether.drivers.storage.StorageMuxInterface`, switched to the
      DUT before power-on.

    Config:
        boot_commands: the U-Boot commands of the ``uboot -> shell`` step (empty: the
            UBoot node's own ``boot_commands``), e.g. ``setenv ipaddr ...``,
            ``tftpboot ...``, ``zboot ...``.
        off_time: seconds the board stays off in a power cycle.
        uboot_timeout: seconds from power-on to U-Boot's prompt.
        boot_timeout: seconds U-Boot's boot commands get to start the kernel.
        shell_timeout: seconds from the kernel's start (or power-on) to the shell's prompt.
        probe_timeout: seconds each look at an unknown board gets (is it at U-Boot? a shell?).
    """

    boot_commands: list[str] = []
    off_time: float = 1.0
    uboot_timeout: float = 60.0
    boot_timeout: float = 120.0
    shell_timeout: float = 180.0
    probe_timeout: float = 5.0

    _current: str = UNKNOWN
    _link: ConsoleLink | None = None

    async def start(self) -> None:
        self._power = self.incoming.connect(PowerInterface)
        self._shell = self.incoming.connect(ConsoleShellInterface)
        self._uboot: Any = self._optional(UBootInterface)
        self._storage: Any = self._optional(StorageMuxInterface)
        try:
            self._link = ConsoleLink.acquire(self.incoming)
        except ServiceNotFound:
            self._link = None
        else:
            await self._link.open_soon(self.logger)
        self.graph = BootGraph.for_board(has_uboot=self._uboot is not None)
        self._lock = asyncio.Lock()
        self._current = UNKNOWN

    def _optional(self, interface: Any) -> Any:
        try:
            return self.incoming.connect(interface)
        except ServiceNotFound:
            return None

    async def prepare_stop(self) -> None:
        if self._link is not None:
            await self._link.release()

    @property
    def _what(self) -> str:
        return f"boot strategy {self.node.path or self.node.name}"

    @export
    async def states(self) -> list[str]:
        """The states this board has."""
        return list(self.graph.states)

    @export
    async def state(self) -> str:
        """The board's state; an unknown board is looked at (power, U-Boot, shell)."""
        async with self._lock:
            if self._current == UNKNOWN:
                self._current = await self._probe()
            return self._current

    @export
    async def transition(self, state: str) -> None:
        """Reach ``state`` from whatever state the board is in (see the interface)."""
        self.graph.check(state)
        async with self._lock:
            current = self._current
            if current != UNKNOWN and not await self._still(current):
                current = UNKNOWN  # it was there and is not any more: look again
            if current == UNKNOWN:
                current = await self._probe()
            self._current = current
            for step in self.graph.path(current, state):
                try:
                    await self._run(step)
                except Exception as exc:
                    self._current = UNKNOWN
                    lines = self._link.last_lines(15) if self._link is not None else ""
                    raise BootStepFailed(
                        f"{self._what}: step {step.name!r} ({current} -> {step.target}) "
                        f"failed: {type(exc).__name__}: {exc}"
                        + (f"\nconsole:\n{lines}" if lines else "")
                    ) from exc
                self._current = current = step.target
                self.logger.info("%s: now %s", self._what, current)

    # -- steps --------------------------------------------------------------------------------

    async def _run(self, step: Step) -> None:
        if step.target == "off":
            await self._power.off()
        elif step.source == "off":
            await self._power_on()
            if step.target == "uboot":
                await self._uboot.interrupt(self.uboot_timeout)
            else:  # no key while it boots: it could stop a bootloader's countdown
                await self._shell.wait_ready(self.shell_timeout, False)
        else:  # uboot -> shell
            await self._uboot.boot(self.boot_timeout, list(self.boot_commands) or None)
            await self._shell.wait_ready(self.shell_timeout, False)

    async def _power_on(self) -> None:
        if await self._power.status():  # a power cycle: give the board its time off
            await self._power.off()
            await asyncio.sleep(self.off_time)
        if self._storage is not None:
            await self._storage.dut()
        if self._link is not None:
            await self._link.open()  # listening before the first byte of the boot
            self._link.forget()  # and not to what the last boot printed
        await self._power.on()

    # -- looking at the board -----------------------------------------------------------------

    async def _probe(self) -> str:
        if not await self._power.status():
            return "off"
        if self._uboot is not None and await self._answers(self._uboot.interrupt):
            return "uboot"
        if await self._answers(self._shell.wait_ready):
            return "shell"
        return UNKNOWN

    async def _still(self, state: str) -> bool:
        if state == "off":
            return not await self._power.status()
        if state == "uboot":
            return await self._answers(self._uboot.interrupt)
        return await self._answers(self._shell.wait_ready)

    async def _answers(self, wait: Any) -> bool:
        try:
            await wait(self.probe_timeout)
        except (TimeoutError, PermissionError):
            return False
        return True
