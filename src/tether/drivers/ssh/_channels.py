"""What the SSH driver's calls and byte streams run on: sessions, SFTP files, forwards.

* :class:`Session` is an SSH session channel (a command, or a shell) as a queue of output
  chunks ending with the exit status; reading pauses while the queue is full (flow control).
* :class:`Upload` / :class:`Download` are SFTP files as tether byte streams, with several
  requests in flight (SFTP answers each write and read; one at a time would wait a round trip
  for each).
* :class:`Forward` is a direct-tcpip channel as a byte stream.
* :class:`ShellStream` is a session with a pty, framed (:mod:`._frames`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
from typing import Any

import asyncssh

from ._fast_sftp import SftpWrites
from ._frames import FrameDecoder, FrameKind, ShellFrame, encode

__all__ = [
    "Download",
    "Forward",
    "Session",
    "ShellStream",
    "Upload",
    "exit_code",
    "pid_prefix",
]

_QUEUE_HIGH = 64  # output chunks queued before the channel stops reading
_UPLOAD_IN_FLIGHT = 8  # chunks being written at once
_DOWNLOAD_BLOCK = 1 << 20
_DOWNLOAD_AHEAD = 4
_END = ("end", b"")


def exit_code(status: int | None, signal_name: str | None) -> int:
    """A shell-style exit status: the status, or 128 + N when signal N killed the command."""
    if status is not None:
        return status
    if signal_name:
        with contextlib.suppress(KeyError):
            return 128 + int(signal.Signals["SIG" + signal_name.removeprefix("SIG")])
        return 128
    return -1


#: What :func:`pid_prefix` makes the device's shell print first on stderr: its pid, framed.
_PID_START = b"\x1etether-pid:"
_PID_END = b"\x1e"


def pid_prefix(command: str) -> str:
    """``command`` preceded by a line that reports the shell's pid on stderr.

    sshd starts each command in a session of its own (``setsid``), so that pid names the
    command's process group: on a timeout, ``kill -KILL -- -PID`` from another channel ends
    it with its children. (SSH's own ``signal`` request is refused by OpenSSH for root
    logins, which have no post-login privilege separation.) The line is taken out of stderr
    before anyone sees it.
    """
    return "printf '\\036tether-pid:%s\\036' \"$$\" >&2\n" + command


class Session(asyncssh.SSHClientSession[bytes]):
    """An SSH session's output as a queue: ``("stdout"|"stderr", bytes)`` then ``_END``.

    Args:
        report_pid: the command starts with :func:`pid_prefix`: take the pid out of stderr.
    """

    def __init__(self, report_pid: bool = False) -> None:
        self.pid: int | None = None
        self._pid_buffer: bytearray | None = bytearray() if report_pid else None
        self.channel: asyncssh.SSHClientChannel[bytes] | None = None
        self.queue: collections.deque[tuple[str, bytes]] = collections.deque()
        self.ready = asyncio.Event()
        self.status: int | None = None
        self.signal: str | None = None
        self.error: Exception | None = None
        self.closed = False
        self._paused = False
        self._writable = asyncio.Event()
        self._writable.set()

    def connection_made(self, chan: Any) -> None:
        self.channel = chan

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        kind = "stderr" if datatype == asyncssh.EXTENDED_DATA_STDERR else "stdout"
        if kind == "stderr" and self._pid_buffer is not None:
            data = self._take_pid(data)
            if not data:
                return
        self.queue.append((kind, data))
        self.ready.set()
        if len(self.queue) >= _QUEUE_HIGH and self.channel is not None and not self._paused:
            self._paused = True
            self.channel.pause_reading()

    def _take_pid(self, data: bytes) -> bytes:
        """Strip the pid report from the start of stderr; what follows it is returned."""
        assert self._pid_buffer is not None
        buffer = self._pid_buffer
        buffer += data
        head = bytes(buffer[: len(_PID_START)])
        if not _PID_START.startswith(head):  # no report (the shell failed to parse, say)
            self._pid_buffer = None
            return bytes(buffer)
        end = buffer.find(_PID_END, len(_PID_START))
        if end < 0:
            if len(buffer) > 64:
                self._pid_buffer = None
                return bytes(buffer)
            return b""
        with contextlib.suppress(ValueError):
            self.pid = int(buffer[len(_PID_START) : end])
        self._pid_buffer = None
        return bytes(buffer[end + 1 :])

    def exit_status_received(self, status: int) -> None:
        self.status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.signal = signal

    def connection_lost(self, exc: Exception | None) -> None:
        self.error = exc
        self.closed = True
        self.queue.append(_END)
        self.ready.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    @property
    def exit_status(self) -> int:
        return exit_code(self.status, self.signal)

    async def next(self) -> tuple[str, bytes]:
        """The next output chunk, or ``_END`` once the channel closed."""
        while not self.queue:
            self.ready.clear()
            await self.ready.wait()
        item = self.queue.popleft()
        if self._paused and len(self.queue) < _QUEUE_HIGH // 2 and self.channel is not None:
            self._paused = False
            self.channel.resume_reading()
        return item

    async def write(self, data: bytes) -> None:
        if self.channel is None or self.closed:
            raise BrokenPipeError("the channel is closed")
        self.channel.write(data)
        await self._writable.wait()

    def kill(self) -> None:
        """Ask the device to kill the command (SIGKILL), then close the channel."""
        if self.channel is not None and not self.closed:
            with contextlib.suppress(Exception):
                self.channel.send_signal("KILL")
            self.channel.close()

    def close(self) -> None:
        if self.channel is not None and not self.closed:
            self.channel.close()


class Upload:
    """An SFTP file being written from a byte stream; the answer is one JSON line.

    ``send`` starts a write at the next offset without waiting for it (at most
    ``_UPLOAD_IN_FLIGHT`` at once); ``send_eof`` waits for all, closes the file and queues the
    answer ``{"path": ..., "bytes": N}`` followed by the end of the stream.
    """

    #: ``send`` takes any buffer: the fast writer uses it up before it returns, the other
    #: path copies it.
    accepts_buffers = True

    def __init__(
        self, file: asyncssh.SFTPClientFile, path: str, fast: SftpWrites | None = None
    ) -> None:
        self._file = file
        self._path = path
        self._fast = fast
        self._offset = 0
        self._writes: set[asyncio.Future[Any]] = set()
        self._room = asyncio.Semaphore(_UPLOAD_IN_FLIGHT)
        self._answer: asyncio.Queue[bytes] = asyncio.Queue()
        self._failure: BaseException | None = None
        self.written = 0

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._writes.discard(task)
        self._room.release()
        if not task.cancelled() and task.exception() is not None and self._failure is None:
            self._failure = task.exception()

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        await self._room.acquire()
        if self._failure is not None:
            self._room.release()
            raise self._failure
        task: asyncio.Future[Any]
        if self._fast is not None:
            try:
                answers = self._fast.write(memoryview(data), self._offset)
            except BaseException:
                self._room.release()
                raise
            task = asyncio.ensure_future(self._fast.confirm(answers))
        else:
            task = asyncio.ensure_future(self._file.write(bytes(data), self._offset))
        self._offset += len(data)
        self._writes.add(task)
        task.add_done_callback(self._done)

    async def send_eof(self) -> None:
        await self.flush()
        await self._file.close()
        self._answer.put_nowait(
            json.dumps({"path": self._path, "bytes": self.written}).encode() + b"\n"
        )
        self._answer.put_nowait(b"")

    async def flush(self) -> None:
        """Wait for every write; raise the first that failed."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=True)
        if self._failure is not None:
            raise self._failure
        self.written = self._offset

    async def receive(self) -> bytes:
        return await self._answer.get()

    async def aclose(self) -> None:
        for task in list(self._writes):
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*list(self._writes), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._file.close()


class Download:
    """An SFTP file read into a byte stream: ``_DOWNLOAD_AHEAD`` blocks requested ahead."""

    def __init__(self, file: asyncssh.SFTPClientFile) -> None:
        self._file = file
        self._offset = 0
        self._ahead: collections.deque[asyncio.Task[bytes]] = collections.deque()
        self._eof = False
        self.sent = 0

    def _fill(self) -> None:
        while not self._eof and len(self._ahead) < _DOWNLOAD_AHEAD:
            self._ahead.append(asyncio.ensure_future(self._read(self._offset)))
            self._offset += _DOWNLOAD_BLOCK

    async def _read(self, offset: int) -> bytes:
        data: bytes = await self._file.read(_DOWNLOAD_BLOCK, offset)
        return data

    async def receive(self) -> bytes:
        self._fill()
        if not self._ahead:
            return b""
        data = await self._ahead.popleft()
        if len(data) < _DOWNLOAD_BLOCK:
            self._eof = True
            for task in self._ahead:
                task.cancel()
            self._ahead.clear()
        self.sent += len(data)
        return data

    async def send(self, data: bytes) -> None:
        """Nothing is expected from the client: bytes it sends are dropped."""

    async def send_eof(self) -> None:
        """The client is done sending (it sends nothing): the file keeps coming."""

    async def aclose(self) -> None:
        for task in self._ahead:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._ahead, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._file.close()


class Forward:
    """A direct-tcpip channel (a connection the device opens for us) as a byte stream."""

    def __init__(self, reader: asyncssh.SSHReader[bytes], writer: asyncssh.SSHWriter[bytes]):
        self._reader = reader
        self._writer = writer

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def receive(self) -> bytes:
        return await self._reader.read(1 << 16)

    async def send_eof(self) -> None:
        if self._writer.can_write_eof():
            self._writer.write_eof()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.channel.wait_closed()


class ShellStream:
    """A shell session as a framed byte stream (see :mod:`._frames`)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._decoder = FrameDecoder()
        self._ended = False

    async def send(self, data: bytes) -> None:
        for frame in self._decoder.feed(data):
            if frame.kind is FrameKind.DATA:
                await self._session.write(frame.data)
            elif frame.kind is FrameKind.RESIZE and self._session.channel is not None:
                self._session.channel.change_terminal_size(frame.cols, frame.rows)
            else:
                raise ValueError(f"shell stream: the client sent a {frame.kind.name} frame")

    async def send_eof(self) -> None:
        channel = self._session.channel
        if channel is not None and not self._session.closed:
            channel.write_eof()

    async def receive(self) -> bytes:
        if self._ended:
            return b""
        kind, data = await self._session.next()
        if (kind, data) == _END:
            self._ended = True
            return encode(ShellFrame(FrameKind.EXIT, status=self._session.exit_status))
        frame_kind = FrameKind.STDERR if kind == "stderr" else FrameKind.DATA
        return encode(ShellFrame(frame_kind, data=data))

    async def aclose(self) -> None:
        self._session.close()
