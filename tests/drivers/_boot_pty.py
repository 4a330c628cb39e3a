"""A console for tests: a real shell (bash, then busybox sh as a login) on a real pty.

Not a fake: the shell, its line editor, echo and terminal all are the real ones; the
driver only streams the pty's master side, as a serial adapter streams a UART.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess

from _queue_console import QueueConsole


class PtyShellConsole(QueueConsole):
    """``command`` on a pty (default: an interactive bash without rc files); every open
    stream gets every byte."""

    url = "pty"
    command: list[str] = ["bash", "--norc", "--noprofile", "-i"]
    env: dict[str, str] = {}

    async def start(self) -> None:
        master, slave = os.openpty()
        env = {"PATH": os.environ["PATH"], "TERM": "xterm", "PS1": "pty-shell$ ", **self.env}
        self._process = subprocess.Popen(  # noqa: ASYNC220
            self.command,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
        os.close(slave)
        self._master = master
        self._queues: list[asyncio.Queue[bytes]] = []  # one per open stream
        os.set_blocking(master, False)
        asyncio.get_running_loop().add_reader(master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except OSError:
            data = b""
        if not data:
            asyncio.get_running_loop().remove_reader(self._master)
        for queue in self._queues:
            queue.put_nowait(data)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._master)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)
        self._process.wait()
        os.close(self._master)

    def listeners(self) -> list[asyncio.Queue[bytes]]:
        return self._queues

    def write(self, data: bytes) -> None:
        os.write(self._master, data)
