"""Lease hooks: the config's ``before_lease`` / ``after_lease`` shell commands.

A hook runs through ``/bin/sh -c`` in its own process group (so a timeout kills whatever it
started, not just the shell), with ``TETHER_HOST`` pointing at the session it belongs to and
the exporter's own ``bin`` directory first on ``PATH`` (so ``dut`` is the one installed with
this tether). Only the last :data:`OUTPUT_TAIL_BYTES` of its output are kept (a hook that
prints without end costs no memory), and they are decoded off the event loop; the last lines
are logged when it fails.

A hook is done when the shell exits, not when its output closes: a background child that
still holds stdout (``sleep 1000 & echo started``) neither turns a success into a time-out nor
outlives the hook, because the whole process group is killed once the shell has exited,
whatever its status.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HookResult", "run_hook"]

log = logging.getLogger("tether.exporter.hooks")

_TAIL_LINES = 20
#: How much of a hook's output is kept (its end).
OUTPUT_TAIL_BYTES = 64 * 1024
# After the shell exits, how long its remaining output may take to arrive.
_DRAIN_SECONDS = 1.0
#: While a hook runs, how often its output so far is handed to ``on_output`` (if it grew).
PROGRESS_SECONDS = 1.0
#: How much of the output ``on_output`` gets (its end).
PROGRESS_CHARS = 4000


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
    name: str,
    command: str,
    *,
    env: dict[str, str],
    time_limit: float,
    on_output: Callable[[str], None] | None = None,
) -> HookResult:
    """Run one hook to completion (or until ``time_limit``, then kill its process group).

    Args:
        name: ``before_lease`` or ``after_lease`` (for logs).
        command: the shell script.
        env: variables added to the exporter's environment (``TETHER_HOST``...).
        time_limit: seconds before the hook is killed and counts as failed.
        on_output: called with the end of the output so far, every
            :data:`PROGRESS_SECONDS` while it grows (for showing it live).

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
    tail = _Tail(OUTPUT_TAIL_BYTES)
    reader = asyncio.ensure_future(_read_into(process.stdout, tail))
    ticker = asyncio.ensure_future(_report(tail, on_output)) if on_output else None
    timed_out = True
    try:
        async with asyncio.timeout(time_limit):
            await _shell_exited(process)
        timed_out = False
    except TimeoutError:
        timed_out = True
    finally:
        # Whatever the shell's status: nothing it started outlives the hook.
        _kill_group(process.pid)
        if ticker is not None:
            ticker.cancel()
        await process.wait()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_DRAIN_SECONDS):
                await asyncio.shield(reader)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    status = None if timed_out else process.returncode
    text = await asyncio.to_thread(tail.text)
    result = HookResult(name, status, text)
    if result.ok:
        log.info("hook %s finished", name)
    return result


class _Tail:
    """The last ``limit`` bytes written, in chunks (no copy of the whole output ever)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.chunks: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.dropped = 0

    def add(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.size += len(chunk)
        while self.size - len(self.chunks[0]) >= self.limit:
            gone = self.chunks.popleft()
            self.size -= len(gone)
            self.dropped += len(gone)

    def last(self, limit: int) -> str:
        """About the last ``limit`` characters (cheap: only the newest chunks are decoded)."""
        chunks: list[bytes] = []
        size = 0
        for chunk in reversed(self.chunks):
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit:
                break
        text = b"".join(reversed(chunks)).decode("utf-8", "replace")
        return text[-limit:]

    def text(self) -> str:
        data = b"".join(self.chunks)[-self.limit :]
        dropped = self.dropped + max(0, self.size - self.limit)
        text = data.decode("utf-8", "replace")
        return f"[{dropped} earlier bytes dropped]\n{text}" if dropped else text


async def _shell_exited(process: asyncio.subprocess.Process) -> None:
    """Return once the shell itself exited, even while a child still holds its output.

    (``Process.wait`` also waits for the pipes to close, which such a child delays.)
    """
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        await process.wait()
        return
    try:
        fd = pidfd_open(process.pid)
    except ProcessLookupError:
        return  # exited and reaped already
    loop = asyncio.get_running_loop()
    exited = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(fd, on_exit)
    try:
        await exited
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _report(tail: _Tail, on_output: Callable[[str], None]) -> None:
    seen = 0
    while True:
        await asyncio.sleep(PROGRESS_SECONDS)
        grown = tail.size + tail.dropped
        if grown != seen:
            seen = grown
            on_output(tail.last(PROGRESS_CHARS))


async def _read_into(stream: asyncio.StreamReader, tail: _Tail) -> None:
    while chunk := await stream.read(1 << 16):
        tail.add(chunk)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
