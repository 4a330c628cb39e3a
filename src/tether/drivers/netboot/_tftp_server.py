"""The TFTP server's I/O: one listening UDP socket, one connected socket and thread a transfer.

Theory of operation. The listening socket is served on the driver's event loop (an
``add_reader`` callback): a read request opens the file and starts a transfer, anything else
is answered with an ERROR packet. Each transfer gets a socket connected to the client and a
thread of its own (``_tftp_transfer``; by default its fast path, ``_tftp_fast``). At most
``max_transfers`` run at once: a request beyond that is refused with an ERROR, so a flood of
requests cannot grow the process. Sockets are made by a factory, so the whole server can live
in another network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Literal

from ._errors import NetbootError, NetbootFileNotFound, NetbootPathRefused
from ._files import FileStore
from ._tftp_fast import FASTEST, NATIVE, FastTransferThread, NativeTransferThread
from ._tftp_packets import (
    ErrorCode,
    ErrorPacket,
    ReadRequest,
    TftpPacketError,
    WriteRequest,
    encode,
    parse,
)
from ._tftp_protocol import ReadTransfer, TransferPolicy
from ._tftp_transfer import TransferThread

__all__ = ["TftpService", "TransferLoop"]

_SOCKET_BUFFER = 4 << 20
_BURST = 64
SocketFactory = Callable[[], socket.socket]
#: The loops a transfer can run (``_tftp_transfer``, ``_tftp_fast``), by name.
TransferLoop = Literal["fastest", "native", "python", "reference"]
_LOOPS: dict[str, type[TransferThread]] = {
    "fastest": FASTEST,
    "python": FastTransferThread,
    "reference": TransferThread,
}
if NATIVE:
    _LOOPS["native"] = NativeTransferThread


def _udp_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


class TftpService:
    """A read-only TFTP server for the files in ``store``.

    Args:
        store: the files served.
        host, port: where to listen (port 0 picks a free one; see :attr:`address`).
        policy: timeouts, retries and option limits.
        socket_factory: makes each UDP socket (e.g. in a network namespace).
        logger: where transfers are logged.
        max_transfers: transfers at once; a request beyond them gets an ERROR.
        transfer_loop: ``fastest`` (the C pump where it is built, else ``python``),
            ``native`` (the C pump), ``python`` (``_tftp_fast`` in Python) or ``reference``
            (every datagram through the state machine).

    Raises:
        NetbootError: ``native`` without the C extension, or an unknown loop.
    """

    def __init__(
        self,
        store: FileStore,
        host: str = "0.0.0.0",
        port: int = 69,
        *,
        policy: TransferPolicy | None = None,
        socket_factory: SocketFactory = _udp_socket,
        logger: logging.Logger | None = None,
        max_transfers: int = 64,
        transfer_loop: TransferLoop = "fastest",
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.policy = policy or TransferPolicy()
        self._factory = socket_factory
        self.logger = logger or logging.getLogger("tether.netboot.tftp")
        self.max_transfers = max_transfers
        if transfer_loop not in _LOOPS:
            built = ", ".join(sorted(_LOOPS))
            raise NetbootError(f"no TFTP transfer loop {transfer_loop!r} here (there are: {built})")
        self._transfer_class = _LOOPS[transfer_loop]
        self.transfers: set[TransferThread] = set()
        self.served = 0
        self.failed = 0
        self._sock: socket.socket | None = None
        self.loop = asyncio.get_event_loop()

    @property
    def address(self) -> tuple[str, int]:
        """Where the server listens (the real port when 0 was asked)."""
        if self._sock is None:
            raise NetbootError("the TFTP server is not listening")
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def _socket(self, bind: tuple[str, int]) -> socket.socket:
        sock = self._factory()
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(bind)
        except OSError:
            sock.close()
            raise
        return sock

    async def start(self) -> None:
        """Bind the listening socket and serve.

        Raises:
            NetbootError: the address cannot be bound (in use, not configured, port < 1024
                without root).
        """
        self.loop = asyncio.get_running_loop()
        try:
            self._sock = self._socket((self.host, self.port))
        except OSError as exc:
            raise NetbootError(
                f"TFTP server cannot listen on {self.host}:{self.port}: {exc.strerror}"
            ) from exc
        self.loop.add_reader(self._sock.fileno(), self._request)

    def _request(self) -> None:
        assert self._sock is not None
        for _ in range(_BURST):
            try:
                datagram, peer = self._sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            try:
                self._serve(datagram, peer[:2])
            except OSError as exc:  # no socket for the transfer: the client will retry
                self.logger.warning("tftp: cannot answer %s: %s", peer, exc)

    def _serve(self, datagram: bytes, peer: tuple[str, int]) -> None:
        assert self._sock is not None
        try:
            packet = parse(datagram)
        except TftpPacketError as exc:
            self._refuse(peer, ErrorCode.ILLEGAL_OPERATION, f"bad request: {exc}")
            return
        if isinstance(packet, WriteRequest):
            self._refuse(peer, ErrorCode.ACCESS_VIOLATION, "this TFTP server is read-only")
            return
        if not isinstance(packet, ReadRequest):
            self._refuse(peer, ErrorCode.ILLEGAL_OPERATION, "expected a read request")
            return
        if packet.mode != "octet":
            self._refuse(peer, ErrorCode.ILLEGAL_OPERATION, "only octet (binary) mode is served")
            return
        if len(self.transfers) >= self.max_transfers:
            busy = f"server busy: {len(self.transfers)} transfers in progress, try again later"
            self._refuse(peer, ErrorCode.NOT_DEFINED, busy)
            return
        try:
            fd, size = self.store.open_read(packet.filename)
        except NetbootFileNotFound:
            self._refuse(peer, ErrorCode.FILE_NOT_FOUND, f"file not found: {packet.filename}")
            return
        except NetbootPathRefused:
            self._refuse(peer, ErrorCode.ACCESS_VIOLATION, f"access denied: {packet.filename}")
            return
        except NetbootError as exc:
            self._refuse(peer, ErrorCode.NOT_DEFINED, str(exc))
            return
        try:
            sock = self._socket((self._sock.getsockname()[0], 0))
            sock.connect(peer)
        except OSError:
            os.close(fd)
            raise
        machine = ReadTransfer(packet, size, lambda offset, n: os.pread(fd, n, offset), self.policy)
        transfer = self._transfer_class(sock, machine, fd, peer, self._finished_threadsafe)
        self.transfers.add(transfer)
        transfer.begin()

    def _refuse(self, peer: tuple[str, int], code: ErrorCode, message: str) -> None:
        """Answer a request with ERROR from a fresh port (the transfer's TID)."""
        assert self._sock is not None
        self.failed += 1
        self.logger.warning("tftp: %s:%s: %s", peer[0], peer[1], message)
        sock = self._socket((self._sock.getsockname()[0], 0))
        with contextlib.closing(sock), contextlib.suppress(OSError):
            sock.sendto(encode(ErrorPacket(code, message)), peer)

    def _finished_threadsafe(self, transfer: TransferThread) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            self.loop.call_soon_threadsafe(self._finished, transfer)

    def _finished(self, transfer: TransferThread) -> None:
        self.transfers.discard(transfer)
        machine = transfer.machine
        seconds = time.monotonic() - transfer.started
        if machine.error is None:
            self.served += 1
            self.logger.info(
                "tftp: sent %s (%d bytes, blksize %d, windowsize %d) to %s:%s in %.2f s",
                machine.request.filename,
                machine.size,
                machine.blksize,
                machine.windowsize,
                *transfer.peer,
                seconds,
            )
        else:
            self.failed += 1
            self.logger.warning(
                "tftp: %s to %s:%s failed: %s",
                machine.request.filename,
                *transfer.peer,
                machine.error,
            )

    async def close(self) -> None:
        """Stop listening and end every transfer."""
        transfers = list(self.transfers)
        for transfer in transfers:
            transfer.close()
        for transfer in transfers:
            await asyncio.to_thread(transfer.thread.join, 5.0)
        if self._sock is not None:
            with contextlib.suppress(ValueError, OSError):
                self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
