"""Lease hooks: the config's ``before_lease`` / ``after_lease`` shell commands.

A hook runs through ``/bin/sh -c`` in its own process group (so a timeout kills whatever it
started, not just the shell), with ``TETHER_HOST`` pointing at the session it belongs to and
the exporter's own ``bin`` directory first on ``PATH`` (so ``dut`` is the one installed with
this tether). Its output is collected and the last lines are logged when it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HookResult", "run_hook"]

log = logging.getLogger("tether.exporter.hooks")

_TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class HookResult:
    """How a hook ended: ``status`` is its exit status, ``None`` when it timed out."""

    name: str
    status: int | None
    output: str

    @property
    def ok(self) -> bool:
        return self.status == 0

    def describe(self) -> str:
        """One line for logs and errors: what failed, and the end of its output."""
        what = "timed out" if self.status is None else f"exited with status {self.status}"
        tail = "\n".join(self.output.rstrip().splitlines()[-_TAIL_LINES:])
        return f"hook {self.name} {what}" + (f"; its output ended with:\n{tail}" if tail else "")


async def run_hook(
    name: str, command: str, *, env: dict[str, str], time_limit: float
) -> HookResult:
    """Run one hook to completion (or until ``time_limit``, then kill its process group).

    Args:
        name: ``before_lease`` or ``after_lease`` (for logs).
        command: the shell script.
        env: variables added to the exporter's environment (``TETHER_HOST``...).
        time_limit: seconds before the hook is killed and counts as failed.

    Returns:
        The exit status (``None`` on timeout) and the combined stdout/stderr.
    """
    full_env = {**os.environ, **env}
    bin_dir = str(Path(sys.executable).parent)
    full_env["PATH"] = os.pathsep.join([bin_dir, full_env.get("PATH", "")])
    process = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=full_env,
        start_new_session=True,
    )
    assert process.stdout is not None
    output = bytearray()

    async def collect() -> int:
        assert process.stdout is not None
        while chunk := await process.stdout.read(1 << 16):
            output.extend(chunk)
        return await process.wait()

    status: int | None
    try:
        async with asyncio.timeout(time_limit):
            status = await collect()
    except TimeoutError:
        status = None
    finally:
        if process.returncode is None:
            _kill_group(process.pid)
            await process.wait()
    result = HookResult(name, status, bytes(output).decode("utf-8", "replace"))
    if result.ok:
        log.info("hook %s finished", name)
    return result


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
