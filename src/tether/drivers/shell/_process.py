"""Run a shell command on the exporter host with streamed output, a timeout and an env.

The command runs through ``/bin/sh -c`` in a session (process group) of its own, so a timeout
or a cancelled call kills the whole group, grandchildren included, and nothing outlives the
call. stdout and stderr are read concurrently into one queue, so chunks arrive in the order
the pipes delivered them; the exit status comes last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass

from tether.errors import TetherError

__all__ = ["CommandFailed", "Exit", "OutputChunk", "ProcessResult", "run_command", "stream_command"]

_CHUNK = 1 << 16


class CommandFailed(TetherError, RuntimeError):
    """A configured command exited with a non-zero status (the message quotes its stderr)."""


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """Bytes a command wrote to ``stream`` (``"stdout"`` or ``"stderr"``)."""

    stream: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Exit:
    """How a command ended: its status (negative: killed by that signal), and whether the
    timeout killed it."""

    status: int
    timed_out: bool


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """A finished command's status and collected output."""

    command: str
    status: int
    stdout: bytes
    stderr: bytes
    timed_out: bool

    def check(self, what: str) -> ProcessResult:
        """Return self when the command succeeded; raise otherwise.

        Raises:
            TimeoutError: the command was killed by its timeout.
            CommandFailed: it exited with a non-zero status.
        """
        if self.timed_out:
            raise TimeoutError(f"{what}: command {self.command!r} timed out and was killed")
        if self.status != 0:
            tail = self.stderr.decode(errors="replace").strip()[-500:]
            raise CommandFailed(
                f"{what}: command {self.command!r} exited with status {self.status}"
                + (f": {tail}" if tail else "")
            )
        return self


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


async def stream_command(
    command: str,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - kills the process group, not just the await
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> AsyncGenerator[OutputChunk | Exit, None]:
    """Run ``command`` with ``/bin/sh -c``; yield its output chunks, then its :class:`Exit`.

    Args:
        command: the shell command line.
        timeout: seconds until the command's process group is killed (``None``: no limit).
        env: variables added to the exporter's environment.
        cwd: working directory (default: the exporter's).
    """
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        start_new_session=True,
    )
    queue: asyncio.Queue[OutputChunk | None] = asyncio.Queue()

    async def pump(reader: asyncio.StreamReader | None, name: str) -> None:
        try:
            while reader is not None and (data := await reader.read(_CHUNK)):
                queue.put_nowait(OutputChunk(name, data))
        finally:
            queue.put_nowait(None)

    pumps = [
        loop.create_task(pump(proc.stdout, "stdout")),
        loop.create_task(pump(proc.stderr, "stderr")),
    ]

    def remaining() -> float | None:
        return None if deadline is None else max(0.0, deadline - loop.time())

    try:
        open_pipes = 2
        timed_out = False
        while open_pipes:
            try:
                item = await asyncio.wait_for(queue.get(), remaining())
            except TimeoutError:
                timed_out = True
                break
            if item is None:
                open_pipes -= 1
            else:
                yield item
        if not timed_out:
            try:
                await asyncio.wait_for(proc.wait(), remaining())
            except TimeoutError:
                timed_out = True
        if timed_out:
            _kill(proc)
        status = await proc.wait()
        yield Exit(status, timed_out)
    finally:
        _kill(proc)
        for task in pumps:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*pumps, return_exceptions=True)
        if proc.returncode is None:
            await proc.wait()


async def run_command(
    command: str,
    *,
    timeout: float | None = None,  # noqa: ASYNC109 - as above
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> ProcessResult:
    """Run ``command`` to the end and collect its output (see :func:`stream_command`)."""
    out: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
    end = Exit(-1, False)
    async for item in stream_command(command, timeout=timeout, env=env, cwd=cwd):
        if isinstance(item, OutputChunk):
            out[item.stream] += item.data
        else:
            end = item
    return ProcessResult(
        command, end.status, bytes(out["stdout"]), bytes(out["stderr"]), end.timed_out
    )
