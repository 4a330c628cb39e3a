"""``Console``: expect-style helpers over a serial byte stream, on the client.

A reader thread receives everything the device sends into a buffer (and the log file, if
any) from the moment the stream opens, so nothing is lost between calls: ``expect`` searches
what has arrived since the previous match, then waits for more. The buffer keeps at most
``max_buffer`` bytes (the oldest are dropped); the log file keeps everything.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from contextlib import AbstractContextManager
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from tether.driver import ByteStream
from tether.errors import TetherError

from ._errors import ConsoleClosed, ExpectTimeout

__all__ = ["Console", "Pattern"]

Pattern = str | bytes | re.Pattern[str] | re.Pattern[bytes]

_TAIL = 200
_CLOSE_TIMEOUT = 5.0


def _compile(pattern: Pattern, encoding: str) -> re.Pattern[bytes]:
    if isinstance(pattern, re.Pattern):
        if isinstance(pattern.pattern, str):
            return re.compile(pattern.pattern.encode(encoding), pattern.flags & ~re.UNICODE)
        return pattern
    raw = pattern.encode(encoding) if isinstance(pattern, str) else bytes(pattern)
    return re.compile(re.escape(raw))


class Console:
    """Send to and expect from a serial console.

    Args:
        opener: the stream's context manager (``client.stream("connect")``); entered here.
        log_file: every byte received is appended to this file.
        encoding: for ``str`` patterns and text sent.
        linesep: what ``sendline`` appends.
        max_buffer: bytes kept for ``expect`` (the oldest are dropped beyond it).
    """

    def __init__(
        self,
        opener: AbstractContextManager[ByteStream],
        *,
        log_file: str | Path | None = None,
        encoding: str = "utf-8",
        linesep: str = "\n",
        max_buffer: int = 1 << 20,
    ) -> None:
        self.encoding = encoding
        self.linesep = linesep
        self._max = max_buffer
        self._opener = opener
        self._log: BinaryIO | None = None
        self._buffer = bytearray()
        self._tail = b""
        self._cond = threading.Condition()
        self._ended = False
        self._error: BaseException | None = None
        self._closed = False
        self._stream = opener.__enter__()
        try:
            if log_file is not None:
                self._log = open(log_file, "ab", buffering=0)  # noqa: SIM115 - closed in close()
        except BaseException as exc:
            opener.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._reader = threading.Thread(target=self._read_loop, name="tether-console", daemon=True)
        self._reader.start()

    # -- receiving ----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        error: BaseException | None = None
        try:
            while data := self._stream.receive():
                if self._log is not None:
                    self._log.write(data)
                with self._cond:
                    self._buffer += data
                    if len(self._buffer) > self._max:
                        del self._buffer[: len(self._buffer) - self._max]
                    self._tail = (self._tail + data)[-_TAIL:]
                    self._cond.notify_all()
        except BaseException as exc:  # reported to the waiting caller, never lost
            error = exc
        with self._cond:
            self._ended = True
            self._error = error
            self._cond.notify_all()

    @property
    def tail(self) -> bytes:
        """The last bytes received (up to 200)."""
        with self._cond:
            return self._tail

    def _wait_for(
        self, regex: re.Pattern[bytes], shown: object, what: str, timeout: float
    ) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                data = bytes(self._buffer)
                match = regex.search(data)
                if match is not None:
                    del self._buffer[: match.end()]
                    return match
                if self._ended:
                    cause = f": {self._error}" if self._error is not None else ""
                    raise ConsoleClosed(
                        f"{what}({shown!r}): the console stream ended{cause}; "
                        f"last bytes received: {self._tail!r}",
                        tail=self._tail,
                    ) from self._error
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ExpectTimeout(
                        f"{what}({shown!r}): not seen within {timeout} s; "
                        f"last bytes received: {self._tail!r}",
                        pattern=shown,
                        tail=self._tail,
                    )
                self._cond.wait(remaining)

    def expect(self, pattern: Pattern, timeout: float = 30.0) -> re.Match[bytes]:
        """Wait until ``pattern`` appears in what the device sent; consume up to its end.

        Args:
            pattern: a compiled regular expression (``re.compile(rb"login: ?$", re.M)``; a
                ``str`` pattern is encoded), or a ``str``/``bytes`` literal matched as is.
            timeout: seconds to wait.

        Returns:
            The match, over bytes.

        Raises:
            ExpectTimeout: not seen in time; the message shows the last bytes received.
            ConsoleClosed: the stream ended first (e.g. the device went away).
        """
        return self._wait_for(_compile(pattern, self.encoding), pattern, "expect", timeout)

    def read_until(self, delimiter: str | bytes = b"\n", timeout: float = 30.0) -> bytes:
        """Bytes received up to and including ``delimiter`` (consumed).

        Raises:
            ExpectTimeout, ConsoleClosed: as :meth:`expect`.
        """
        match = self._wait_for(_compile(delimiter, self.encoding), delimiter, "read_until", timeout)
        return match.string[: match.end()]

    def read_available(self) -> bytes:
        """Everything received and not consumed yet (consumed now); never waits."""
        with self._cond:
            data = bytes(self._buffer)
            self._buffer.clear()
            return data

    # -- sending ------------------------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        """Send ``data`` (``str`` is encoded)."""
        self._stream.send(data.encode(self.encoding) if isinstance(data, str) else bytes(data))

    def sendline(self, line: str | bytes = "") -> None:
        """Send ``line`` followed by ``linesep``."""
        raw = line.encode(self.encoding) if isinstance(line, str) else bytes(line)
        self.send(raw + self.linesep.encode(self.encoding))

    # -- closing ------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the stream ended (closed here, or by the device or the session)."""
        with self._cond:
            return self._closed or self._ended

    def close(self) -> None:
        """End the stream (the driver closes the port) and the log file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(TetherError, OSError):
            self._stream.send_eof()
        self._reader.join(_CLOSE_TIMEOUT)
        try:
            if self._reader.is_alive():  # the driver did not end its side: abort the stream
                abort = ConnectionAbortedError("console close timed out")
                self._opener.__exit__(type(abort), abort, None)
            else:
                with contextlib.suppress(TetherError):
                    self._opener.__exit__(None, None, None)
        finally:
            if self._log is not None:
                self._log.close()

    def __enter__(self) -> Console:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
