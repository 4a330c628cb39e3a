"""A small HTTP/1.1 file server for the session's files: GET and HEAD, single byte ranges.

Theory of operation. One asyncio stream server; each connection reads requests one after
another (keep-alive unless the client says ``Connection: close`` or speaks HTTP/1.0). A
request line and headers are bounded; the path is percent-decoded and checked by the
:class:`~._files.FileStore` (no ``..``, nothing absolute, no symlink out), then the file is
sent with ``loop.sendfile`` (the kernel's sendfile on a plain socket). ``Range: bytes=A-B``,
``A-`` and ``-N`` are honoured with 206 and ``Content-Range``; a range past the end gets 416;
several ranges in one header get the whole file (200), which RFC 9110 allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
from email.utils import formatdate
from urllib.parse import unquote, urlsplit

from ._errors import NetbootError, NetbootFileNotFound, NetbootPathRefused
from ._files import FileStore

__all__ = ["HttpService"]

_MAX_LINE = 8192
_CHUNK = 256 << 10
_MAX_HEADERS = 100
_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")
_REASONS = {
    200: "OK",
    206: "Partial Content",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    416: "Range Not Satisfiable",
    500: "Internal Server Error",
}


class _BadRequest(Exception):
    pass


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``(first, last)`` inclusive for a single ``bytes=`` range, ``None`` to send it all.

    Raises:
        ValueError: the range cannot be satisfied (it starts past the end).
    """
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # several ranges or another unit: the whole file
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text or int(last_text) == 0:
            raise ValueError("empty suffix range")
        count = min(int(last_text), size)
        return size - count, size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size or last < first:
        raise ValueError("range outside the file")
    return first, min(last, size - 1)


async def _send_file(writer: asyncio.StreamWriter, fd: int, offset: int, count: int) -> None:
    """``count`` bytes of ``fd`` from ``offset``: the kernel's sendfile where the loop has it
    (asyncio's), else read and written in chunks (uvloop)."""
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):
        with os.fdopen(os.dup(fd), "rb") as file:
            await loop.sendfile(writer.transport, file, offset, count)
        return
    end = offset + count
    while offset < end:
        chunk = os.pread(fd, min(_CHUNK, end - offset), offset)
        if not chunk:
            raise ConnectionError("the file shrank while it was sent")
        writer.write(chunk)
        await writer.drain()
        offset += len(chunk)


class HttpService:
    """Serves ``store`` over HTTP on ``host:port`` (port 0 picks a free one)."""

    def __init__(
        self,
        store: FileStore,
        host: str = "0.0.0.0",
        port: int = 80,
        *,
        sock: socket.socket | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self._sock = sock
        self.logger = logger or logging.getLogger("tether.netboot.http")
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen.

        Raises:
            NetbootError: the address cannot be bound.
        """
        try:
            if self._sock is not None:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._sock.bind((self.host, self.port))
                self._server = await asyncio.start_server(self._connection, sock=self._sock)
            else:
                self._server = await asyncio.start_server(self._connection, self.host, self.port)
        except OSError as exc:
            raise NetbootError(
                f"HTTP server cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc

    @property
    def address(self) -> tuple[str, int]:
        """Where the server listens."""
        if self._server is None:
            raise NetbootError("the HTTP server is not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return str(host), int(port)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while await self._one_request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    async def _one_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Serve one request; whether the connection stays open."""
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return False
        except asyncio.LimitOverrunError:
            await self._simple(writer, 400, "request line too long", head=False)
            return False
        try:
            method, target, version, headers = await self._head(line, reader)
        except _BadRequest as exc:
            await self._simple(writer, 400, str(exc), head=False)
            return False
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if method not in ("GET", "HEAD"):
            await self._simple(writer, 405, f"{method} is not served", head=False, allow=True)
            return keep
        await self._serve_file(writer, method == "HEAD", target, headers)
        return keep

    async def _head(
        self, line: bytes, reader: asyncio.StreamReader
    ) -> tuple[str, str, str, dict[str, str]]:
        parts = line.decode("latin-1").strip().split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest("malformed request line")
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            raw = await reader.readuntil(b"\n")
            if len(raw) > _MAX_LINE:
                raise _BadRequest("header line too long")
            text = raw.decode("latin-1").strip()
            if not text:
                return parts[0], parts[1], parts[2], headers
            name, sep, value = text.partition(":")
            if not sep:
                raise _BadRequest("malformed header")
            headers[name.strip().lower()] = value.strip()
        raise _BadRequest("too many headers")

    async def _serve_file(
        self, writer: asyncio.StreamWriter, head: bool, target: str, headers: dict[str, str]
    ) -> None:
        name = unquote(urlsplit(target).path).lstrip("/")
        try:
            fd, size = self.store.open_read(name)
        except NetbootFileNotFound:
            await self._simple(writer, 404, f"no file {name!r}", head)
            return
        except NetbootPathRefused:
            await self._simple(writer, 403, f"{name!r} is outside the served files", head)
            return
        except NetbootError as exc:
            await self._simple(writer, 500, str(exc), head)
            return
        with os.fdopen(fd, "rb") as file:
            status, first, last = 200, 0, size - 1
            extra = ""
            if "range" in headers and size > 0:
                try:
                    span = parse_range(headers["range"], size)
                except ValueError:
                    await self._simple(
                        writer, 416, "range not satisfiable", head, content_range=f"*/{size}"
                    )
                    return
                if span is not None:
                    status, (first, last) = 206, span
                    extra = f"Content-Range: bytes {first}-{last}/{size}\r\n"
            count = last - first + 1 if size else 0
            writer.write(
                (
                    f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                    f"Date: {formatdate(usegmt=True)}\r\n"
                    "Content-Type: application/octet-stream\r\n"
                    f"Content-Length: {count}\r\nAccept-Ranges: bytes\r\n{extra}\r\n"
                ).encode()
            )
            if not head and count:
                await writer.drain()
                await _send_file(writer, file.fileno(), first, count)
            await writer.drain()
        self.logger.info(
            "http: %s %s (%d bytes, %d)", "HEAD" if head else "GET", name, count, status
        )

    async def _simple(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        message: str,
        head: bool,
        *,
        allow: bool = False,
        content_range: str | None = None,
    ) -> None:
        body = (message + "\n").encode()
        extra = "Allow: GET, HEAD\r\n" if allow else ""
        if content_range:
            extra += f"Content-Range: bytes {content_range}\r\n"
        writer.write(
            (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n{extra}\r\n"
            ).encode()
            + (b"" if head else body)
        )
        await writer.drain()
        if status >= 400:
            self.logger.warning("http: %d: %s", status, message)

    async def close(self) -> None:
        """Stop listening and drop open connections."""
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
