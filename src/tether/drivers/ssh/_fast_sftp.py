"""SFTP writes sent at once, their data never joined: the SFTP half of the fast path.

Theory of operation. asyncssh's ``SFTPClientFile.write`` runs each request as a task and
builds it by joining the data three times (the data string, the request, its length prefix):
each a fresh allocation of up to 255 KiB, which costs page faults as well as the copy.
:class:`SftpWrites` builds only a request's header, hands header and data to the channel's
fast path (:mod:`._fast_channel`) as two parts, and registers the answer's future with
asyncssh's SFTP client the way its own requests do, so the client's reader resolves it.
The data is used up (encrypted or copied) before :meth:`SftpWrites.write` returns, so it may
be a view of a buffer the caller reuses.

Like the channel path it touches asyncssh's private state; :meth:`SftpWrites.open` returns
None when anything it needs is missing, and the caller uses asyncssh's own ``write``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncssh

from ._fast_channel import fast_sender, sftp_channel

__all__ = ["SftpWrites"]

_FXP_WRITE = 6
_FXP_STATUS = 101
_HANDLER_NAMES = ("_next_pktid", "_requests", "_writer", "_packet_handlers")


class SftpWrites:
    """Write requests for one open SFTP file (see the module docstring)."""

    def __init__(self, handler: Any, handle: bytes, sender: Any, block: int) -> None:
        self._handler = handler
        self._handle = len(handle).to_bytes(4, "big") + handle
        self._sender = sender
        self._block = block

    @classmethod
    def open(cls, sftp: asyncssh.SFTPClient, file: asyncssh.SFTPClientFile) -> SftpWrites | None:
        """The fast writer for ``file`` of ``sftp``, or None where it cannot run."""
        handler = getattr(sftp, "_handler", None)
        handle = getattr(file, "_handle", None)
        block = getattr(file, "write_len", None)
        sender = fast_sender(sftp_channel(sftp))
        if (
            sender is None
            or not isinstance(handle, bytes)
            or not isinstance(block, int)
            or not all(hasattr(handler, name) for name in _HANDLER_NAMES)
        ):
            return None
        return cls(handler, handle, sender, block)

    def write(self, data: memoryview, offset: int) -> list[asyncio.Future[Any]]:
        """Send the requests writing ``data`` at ``offset`` now; the futures of their answers
        (for :meth:`confirm`).

        Raises:
            SFTPNoConnection, BrokenPipeError: the SFTP channel is closed.
        """
        handler = self._handler
        writer = handler._writer
        if writer is None or writer.channel.is_closing():
            raise asyncssh.SFTPNoConnection("Connection not open")
        loop = asyncio.get_running_loop()
        block = self._block or len(data) or 1
        first_id = handler._next_pktid
        parts: list[memoryview] = []
        for number, start in enumerate(range(0, len(data), block)):
            chunk = data[start : start + block]
            header = b"".join(
                (
                    (1 + 4 + len(self._handle) + 8 + 4 + len(chunk)).to_bytes(4, "big"),
                    bytes((_FXP_WRITE,)),
                    ((first_id + number) & 0xFFFFFFFF).to_bytes(4, "big"),
                    self._handle,
                    (offset + start).to_bytes(8, "big"),
                    len(chunk).to_bytes(4, "big"),
                )
            )
            parts += (memoryview(header), chunk)
        # All the requests in one channel write: their packets go to the socket together.
        self._sender.write_parts(parts)
        answers: list[asyncio.Future[Any]] = []
        for number in range(len(parts) // 2):
            request_id = (first_id + number) & 0xFFFFFFFF
            answer: asyncio.Future[Any] = loop.create_future()
            handler._requests[request_id] = answer  # the reply can only come after we yield
            answers.append(answer)
        handler._next_pktid = (first_id + len(answers)) & 0xFFFFFFFF
        return answers

    async def confirm(self, answers: list[asyncio.Future[Any]]) -> None:
        """Wait for the answers of one :meth:`write`.

        Raises:
            SFTPError: the device refused a write (no space, permission denied, ...).
        """
        for result in await asyncio.gather(*answers, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
            kind, packet = result
            if kind != _FXP_STATUS:
                raise asyncssh.SFTPBadMessage(f"Unexpected response type: {kind}")
            self._handler._packet_handlers[kind](self._handler, packet)  # raises if not OK
