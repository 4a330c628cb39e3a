"""The TFTP server's I/O: one listening UDP socket, one connected socket and thread a transfer.

Theory of operation. The listening socket is served on the driver's event loop (an
``add_reader`` callback): a read request opens the file and starts a transfer, anything else
is answered with an ERROR packet. Each transfer gets a socket connected to the client (its
TID, RFC 1350: the kernel drops datagrams from anybody else) and a thread that runs its
:class:`~._tftp_protocol.ReadTransfer`: send what the machine returns, wait for the next
datagram (blocking ``recv`` with a kernel receive timeout), feed it in, and call the
machine's ``timeout`` once its timer is due. A thread, not a loop callback: in lock-step TFTP
the server's cost per block is the whole story, and the event loop's overhead per datagram
was a third of it. (Polling for the ACK before blocking was tried: it helps on an idle host,
hurts on a busy one, and a real board's ACK takes a network round trip anyway.) Sockets are
made by a factory, so the whole server can live in another network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Callable

from ._errors import NetbootError, NetbootFileNotFound, NetbootPathRefused
from ._files import FileStore
from ._tftp_packets import (
    ErrorCode,
    ErrorPacket,
    ReadRequest,
    TftpPacketError,
    WriteRequest,
    encode,
    parse,
)
from ._tftp_protocol import ReadTransfer, Step, TransferPolicy

__all__ = ["TftpService"]

_SOCKET_BUFFER = 4 << 20
_BURST = 64
#: How often a waiting transfer checks whether the server is closing.
_STOP_CHECK = 0.25
_RECEIVE = 1024
SocketFactory = Callable[[], socket.socket]


def _udp_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


class _Transfer:
    """One transfer on its own thread: blocking ``recv`` with the machine's timer as the
    socket timeout, the state machine between two system calls."""

    def __init__(
        self,
        service: TftpService,
        sock: socket.socket,
        machine: ReadTransfer,
        fd: int,
        peer: tuple[str, int],
    ) -> None:
        self.service = service
        self.sock = sock
        self.machine = machine
        self.fd = fd
        self.peer = peer
        self.started = time.monotonic()
        self.stopping = False
        self.buffer = bytearray(_RECEIVE)
        self.view = memoryview(self.buffer)
        self.thread = threading.Thread(
            target=self._run, name=f"tether-tftp-{peer[0]}:{peer[1]}", daemon=True
        )

    def begin(self) -> None:
        # Blocking, with a kernel receive timeout: one system call a datagram (a Python
        # socket timeout would poll first), and a periodic wake-up to notice a close.
        self.sock.setblocking(True)
        seconds = int(_STOP_CHECK)
        micros = int((_STOP_CHECK - seconds) * 1e6)
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", seconds, micros)
        )
        self.thread.start()

    def _run(self) -> None:
        try:
            self._serve()
        finally:
            self.sock.close()
            os.close(self.fd)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
                self.service.loop.call_soon_threadsafe(self.service._finished, self)

    def _serve(self) -> None:
        sock = self.sock
        step = self.machine.start()
        while True:
            for datagram in step.send:
                with contextlib.suppress(OSError):  # lost here: sent again on timeout
                    sock.send(datagram)
            if step.timer is None or self.stopping:
                return
            deadline = time.monotonic() + step.timer
            step = self._wait(deadline)

    def _wait(self, deadline: float) -> Step:
        """The machine's step for the next datagram, or for the timer at ``deadline``."""
        recv = self._recv
        while not self.stopping:
            try:
                return self.machine.receive(recv(0))
            except (BlockingIOError, InterruptedError):  # SO_RCVTIMEO expired
                pass
            except OSError:  # e.g. ICMP port unreachable from a client that went away
                pass
            if time.monotonic() >= deadline:
                return self.machine.timeout()
        return Step([], None)

    def _recv(self, flags: int) -> bytes:
        # Into a small buffer: a fresh 64 KiB one for each 4-byte ACK would cost more than
        # the ACK's processing. A longer datagram (a client's DATA, never legal here) is cut.
        count = self.sock.recv_into(self.buffer, 0, flags)
        return bytes(self.view[:count])

    def close(self) -> None:
        """Ask the thread to end (within ``_STOP_CHECK`` seconds)."""
        self.stopping = True


class TftpService:
    """A read-only TFTP server for the files in ``store``.

    Args:
        store: the files served.
        host, port: where to listen (port 0 picks a free one; see :attr:`address`).
        policy: timeouts, retries and option limits.
        socket_factory: makes each UDP socket (e.g. in a network namespace).
        logger: where transfers are logged.
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
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.policy = policy or TransferPolicy()
        self._factory = socket_factory
        self.logger = logger or logging.getLogger("tether.netboot.tftp")
        self.transfers: set[_Transfer] = set()
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
        transfer = _Transfer(self, sock, machine, fd, peer)
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

    def _finished(self, transfer: _Transfer) -> None:
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
