"""``BoardDisk``: the disk of a composite board (QEMU, the simulated board) as a storage mux.

The board boots from the image file; its ``disk`` child decides who may use the file. The
board sets the child's ``_board`` when it builds its children, and moves a ``host`` disk to
``dut`` when it powers on.
"""

from __future__ import annotations

import os
from typing import Protocol

from tether.errors import LifecycleError

from ._driver import MockStorageMux
from ._errors import StorageModeError

__all__ = ["BoardDisk", "RunningBoard"]


class RunningBoard(Protocol):
    """What a board offers its disk child."""

    @property
    def running(self) -> bool: ...


class BoardDisk(MockStorageMux):
    """The board's disk image as a storage mux: write it while the board is off.

    ``host`` is refused while the board runs; powering on moves ``host`` to ``dut``; in
    ``off`` the board boots without its disk. Starts in ``dut``.

    Config:
        path: the image file (default: a temporary file, removed at stop).
        disk_mib: a smaller file is grown (sparse) to this size at start.
    """

    initial: str = "dut"
    disk_mib: int = 64

    _board: RunningBoard | None = None  # set by the board (private: not a config field)

    @property
    def mode(self) -> str:
        return self._mode

    async def start(self) -> None:
        await super().start()
        self._grow()

    def _grow(self) -> None:
        size = self.disk_mib << 20
        if os.path.getsize(self.path) < size:
            os.truncate(self.path, size)

    def _owner(self) -> RunningBoard:
        if self._board is None:
            raise LifecycleError(f"{type(self).__name__} works only as a child of its board")
        return self._board

    async def switch(self, mode: str) -> None:
        if mode == "host" and self._owner().running:
            raise StorageModeError(
                f"cannot give the disk {self.path} to the host while the board runs; "
                "power it off first"
            )
        await super().switch(mode)
