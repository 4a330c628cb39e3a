"""The files a session serves: a private directory, filled by the client, read by the board.

Theory of operation. Each driver instance (one per session) makes its own directory under
``parent`` and removes it, with everything the client put there, when the session ends. A
name is one or more ``/``-separated components; none may be empty, ``.`` or ``..`` and the
name may not be absolute. Reads resolve the real path (symlinks followed) and refuse anything
that is not inside the directory, then open it with ``O_NOFOLLOW``. Writes go to a hidden
temporary file renamed into place when complete, so a board never reads half a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile

from ._errors import NetbootError, NetbootFileNotFound, NetbootPathRefused

__all__ = ["FileStore", "PutSink"]


class FileStore:
    """A session's served files under a fresh directory in ``parent`` (default: the system's
    temporary directory)."""

    def __init__(self, owner: str, parent: str | None = None) -> None:
        self.owner = owner
        if parent:
            os.makedirs(parent, exist_ok=True)
        self.root = os.path.realpath(tempfile.mkdtemp(prefix="tether-netboot-", dir=parent or None))

    def check_name(self, name: str) -> str:
        """``name`` as a path relative to the root.

        Raises:
            NetbootPathRefused: absolute, empty, or with ``.``/``..``/empty components.
        """
        if not name or name.startswith("/") or "\0" in name or "\\" in name:
            raise NetbootPathRefused(f"{self.owner}: file name {name!r} is not allowed")
        parts = name.split("/")
        if any(part in ("", ".", "..") for part in parts):
            raise NetbootPathRefused(
                f"{self.owner}: file name {name!r} would leave the served directory"
            )
        return os.path.join(*parts)

    def open_read(self, name: str) -> tuple[int, int]:
        """Open a served file: ``(fd, size)``; the caller closes the descriptor.

        Raises:
            NetbootPathRefused: the name, or a symlink on its way, leads outside the root.
            NetbootFileNotFound: there is no such file.
        """
        path = os.path.join(self.root, self.check_name(name))
        real = os.path.realpath(path)
        if os.path.commonpath([real, self.root]) != self.root:
            raise NetbootPathRefused(f"{self.owner}: {name!r} leads outside the served directory")
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NetbootFileNotFound(f"{self.owner}: no file {name!r} was put here") from None
        except OSError as exc:
            raise NetbootError(f"{self.owner}: cannot open {name!r}: {exc.strerror}") from exc
        size = os.fstat(fd).st_size
        if not os.path.isfile(real):
            os.close(fd)
            raise NetbootFileNotFound(f"{self.owner}: {name!r} is not a file")
        return fd, size

    def list(self) -> list[str]:
        """Every served file's name, sorted."""
        names = []
        for folder, _, files in os.walk(self.root):
            for file in files:
                if not file.startswith(".tether-put-"):
                    names.append(os.path.relpath(os.path.join(folder, file), self.root))
        return sorted(names)

    def remove(self, name: str) -> None:
        """Remove a served file.

        Raises:
            NetbootFileNotFound: there is no such file.
        """
        path = os.path.join(self.root, self.check_name(name))
        try:
            os.unlink(path)
        except FileNotFoundError:
            raise NetbootFileNotFound(f"{self.owner}: no file {name!r} to remove") from None

    def sink(self, name: str) -> PutSink:
        """A byte-stream sink that stores what it receives as ``name``."""
        relative = self.check_name(name)
        return PutSink(self, name, os.path.join(self.root, relative))

    def close(self) -> None:
        """Remove the directory and every file in it."""
        shutil.rmtree(self.root, ignore_errors=True)


class PutSink:
    """What ``put(name)`` yields: bytes in; after the client's EOF, one JSON line out with
    ``name``, ``bytes`` and ``sha256``, then end of stream."""

    def __init__(self, store: FileStore, name: str, path: str) -> None:
        self._store = store
        self.name = name
        self.path = path
        folder = os.path.dirname(path)
        try:
            os.makedirs(folder, exist_ok=True)
            self._fd, self._temp = tempfile.mkstemp(prefix=".tether-put-", dir=folder)
        except OSError as exc:
            raise self._error(exc) from exc
        self.size = 0
        self._hash = hashlib.sha256()
        self._answer: bytes | None = None
        self._done = asyncio.Event()
        self._failure: NetbootError | None = None

    def _error(self, exc: OSError) -> NetbootError:
        if exc.errno == errno.ENOSPC:
            why = "the disk is full"
        elif exc.errno == errno.EDQUOT:
            why = "the disk quota is exceeded"
        else:
            why = exc.strerror or str(exc)
        return NetbootError(f"{self._store.owner}: cannot store {self.name!r}: {why}")

    async def send(self, data: bytes) -> None:
        if self._fd < 0:  # failed already: receive() reports it
            return
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
        except OSError as exc:
            self._fail(exc)
            return
        self.size += len(data)
        self._hash.update(data)

    async def send_eof(self) -> None:
        if self._fd < 0:
            return
        try:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.replace(self._temp, self.path)
        except OSError as exc:
            self._fail(exc)
            return
        answer = {"name": self.name, "bytes": self.size, "sha256": self._hash.hexdigest()}
        self._answer = json.dumps(answer).encode() + b"\n"
        self._done.set()

    def _fail(self, exc: OSError) -> None:
        self._failure = self._error(exc)
        self._failure.__cause__ = exc
        self._discard()

    async def receive(self) -> bytes:
        await self._done.wait()
        if self._failure is not None:
            raise self._failure
        answer, self._answer = self._answer, b""
        return answer or b""

    def _discard(self) -> None:
        self._done.set()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        with contextlib.suppress(OSError):
            os.unlink(self._temp)

    async def aclose(self) -> None:
        """Drop an incomplete file (the client went away before its EOF)."""
        self._discard()
