from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

from pydantic import BaseModel

from tether.driver import Interface
from tether.drivers.console import CommandResult

__all__ = ["SshInterface", "SshOutput"]


class SshOutput(BaseModel):
    """One item of :meth:`SshInterface.run_stream`.

    ``kind`` is ``"stdout"`` or ``"stderr"`` (``data`` holds the bytes), or ``"exit"``, always
    last, with the command's ``status`` (128 + N when signal N killed it).
    """

    kind: Literal["stdout", "stderr", "exit"]
    data: bytes = b""
    status: int | None = None


class SshInterface(Interface):
    """A device reached over SSH: commands, files (SFTP), port forwards and a shell."""

    name = "tether.ssh"
    version = 1
    client = "tether.drivers.ssh.SshClient"

    @abstractmethod
    async def run(self, command: str, timeout: float = 30.0) -> CommandResult:  # noqa: ASYNC109
        """Run ``command`` on the device; its output (stdout and stderr as they came) and
        exit status."""

    @abstractmethod
    def run_stream(self, command: str, timeout: float = 30.0) -> AsyncIterator[SshOutput]:
        """Run ``command``; stream its stdout and stderr as they come, then its exit status."""

    @abstractmethod
    def put(self, remote_path: str, mode: int | None = None) -> AbstractAsyncContextManager[Any]:
        """Write the bytes that come in to ``remote_path`` on the device (SFTP)."""

    @abstractmethod
    def get(self, remote_path: str) -> AbstractAsyncContextManager[Any]:
        """Send the device's file ``remote_path`` (SFTP)."""

    @abstractmethod
    def forward(self, port: int, host: str = "localhost") -> AbstractAsyncContextManager[Any]:
        """A byte stream to ``host:port`` as the device sees it (an SSH direct-tcpip channel)."""

    @abstractmethod
    def shell(
        self, term: str = "xterm-256color", cols: int = 80, rows: int = 24, pty: bool = True
    ) -> AbstractAsyncContextManager[Any]:
        """An interactive shell on the device, framed (see ``tether.drivers.ssh``)."""

    @abstractmethod
    async def address(self) -> str:
        """``user@host:port`` of the device."""
