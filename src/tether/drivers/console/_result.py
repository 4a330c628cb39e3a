"""The result of a command run on a device: what it printed and its exit status."""

from __future__ import annotations

from pydantic import BaseModel

__all__ = ["CommandResult"]


class CommandResult(BaseModel):
    """What a command run on the device printed, and its exit status.

    Shared by every driver that runs a command on a device (a console shell, U-Boot, SSH), so
    a test reads them alike and ``dut NODE run CMD`` prints ``output`` and exits with
    ``status``.

    Attributes:
        output: What the command printed (the console's echo and prompt removed).
        status: The command's exit status (0 for success).
    """

    output: str
    status: int

    @property
    def ok(self) -> bool:
        """Whether the command succeeded (status 0)."""
        return self.status == 0
