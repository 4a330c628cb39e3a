"""One TFTP read transfer on a thread of its own: the reference I/O loop around the machine.

Theory of operation. A transfer has a UDP socket connected to the client (its TID, RFC 1350:
the kernel drops datagrams from anybody else) and a thread that runs its
:class:`~._tftp_protocol.ReadTransfer`: send what the machine returns, wait for the next
datagram (blocking ``recv`` with a kernel receive timeout), feed it in, and call the
machine's ``timeout`` once its timer is due. A thread, not an event loop callback: in
lock-step TFTP the server's cost per block is the whole story, and the event loop's overhead
per datagram was a third of it. (Polling for the ACK before blocking was tried: it helps on an
idle host, hurts on a busy one, and a real board's ACK takes a network round trip anyway.)

This loop hands every datagram to the machine; ``_tftp_fast`` overrides :meth:`_wait` to
answer the steady state's ACKs itself and is what the server runs by default.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable

from ._tftp_protocol import ReadTransfer, Step

__all__ = ["DONE", "STOP_CHECK", "TransferThread"]

#: How often a waiting transfer checks whether the server is closing.
STOP_CHECK = 0.25
#: The step of a transfer that is over.
DONE = Step([], None)
_RECEIVE = 1024


class TransferThread:
    """One transfer on its own thread: blocking ``recv`` with the machine's timer as the
    deadline, the state machine between two system calls.

    Args:
        sock: connected to the client; the transfer closes it.
        machine: the transfer's state machine.
        fd: the open file; the transfer closes it.
        peer: the client's address (for names and logs).
        finished: called on the transfer's thread once it is over (sockets closed).
    """

    def __init__(
        self,
        sock: socket.socket,
        machine: ReadTransfer,
        fd: int,
        peer: tuple[str, int],
        finished: Callable[[TransferThread], None],
    ) -> None:
        self.sock = sock
        self.machine = machine
        self.fd = fd
        self.peer = peer
        self.started = time.monotonic()
        self.stopping = False
        self.buffer = bytearray(_RECEIVE)
        self.view = memoryview(self.buffer)
        self._finished = finished
        self.thread = threading.Thread(
            target=self._run, name=f"tether-tftp-{peer[0]}:{peer[1]}", daemon=True
        )

    def begin(self) -> None:
        """Start the thread."""
        # Blocking, with a kernel receive timeout: one system call a datagram (a Python
        # socket timeout would poll first), and a periodic wake-up to notice a close.
        self.sock.setblocking(True)
        seconds = int(STOP_CHECK)
        micros = int((STOP_CHECK - seconds) * 1e6)
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", seconds, micros)
        )
        self.thread.start()

    def close(self) -> None:
        """Ask the thread to end (within ``STOP_CHECK`` seconds)."""
        self.stopping = True

    def _run(self) -> None:
        try:
            self._serve()
        except OSError as exc:  # reading the file failed (a socket's errors are handled)
            step = self.machine.abort(f"cannot read {self.machine.request.filename}: {exc}")
            for datagram in step.send:
                with contextlib.suppress(OSError):
                    self.sock.send(datagram)
        finally:
            self.sock.close()
            os.close(self.fd)
            self._finished(self)

    def _serve(self) -> None:
        sock = self.sock
        step = self.machine.start()
        while True:
            for datagram in step.send:
                with contextlib.suppress(OSError):  # lost here: sent again on timeout
                    sock.send(datagram)
            if step.timer is None or self.stopping:
                return
            step = self._wait(time.monotonic() + step.timer)

    def _wait(self, deadline: float) -> Step:
        """The machine's step for the next datagram, or for the timer at ``deadline``."""
        while not self.stopping:
            try:
                return self.machine.receive(self._recv())
            except (BlockingIOError, InterruptedError):  # SO_RCVTIMEO expired
                pass
            except OSError:  # e.g. ICMP port unreachable from a client that went away
                pass
            if time.monotonic() >= deadline:
                return self.machine.timeout()
        return DONE

    def _recv(self) -> bytes:
        # Into a small buffer: a fresh 64 KiB one for each 4-byte ACK would cost more than
        # the ACK's processing. A longer datagram (a client's DATA, never legal here) is cut.
        count = self.sock.recv_into(self.buffer)
        return bytes(self.view[:count])
