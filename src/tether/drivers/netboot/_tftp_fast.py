"""The TFTP transfer's fast path: the steady state's ACKs answered without the machine's table.

Theory of operation. In the steady state of a transfer every datagram is the ACK of the
window's last block, and the answer is the next window. The reference loop
(:class:`~._tftp_transfer.TransferThread`) turns that ACK into bytes, dispatches it through the
machine's table, reads each block with its own ``pread`` and joins header and payload into a
new datagram: in CPython that is as much work as the kernel's for the block.
:class:`FastTransferThread` recognises the ACK by its four bytes and sends the next window
itself, from a :class:`BlockBuffer`: one ``preadv`` fills many blocks, each laid out behind
room for its DATA header, so a block's datagram is a memoryview of the buffer with the header
written in place. Two system calls a block (``send``, ``recv``), no per-block copy.
:class:`NativeTransferThread` runs the same loop in C (``_tftp_pump.c``) with the GIL released.
Anything else (the OACK's answer, an ACK of an earlier block, a client's ERROR, a timeout)
goes to the machine as in the reference loop, after
:meth:`~._tftp_protocol.ReadTransfer.acknowledge` has let it catch up with the windows sent
here: the machine keeps the state and the counts and stays the definition of the protocol.
The tests run the server with every loop.
"""

from __future__ import annotations

import os
import struct
import time

from ._tftp_protocol import ReadTransfer, Step
from ._tftp_transfer import DONE, STOP_CHECK, TransferThread

try:
    from . import _tftp_pump
except ImportError:  # pragma: no cover - the C extension is optional (setup.py)
    _tftp_pump = None  # type: ignore[assignment]

__all__ = ["FASTEST", "NATIVE", "BlockBuffer", "FastTransferThread", "NativeTransferThread"]

#: Whether the C pump is built.
NATIVE = _tftp_pump is not None

#: Bytes of file one transfer keeps in memory (at least one block).
BUFFER_BYTES = 256 << 10
#: The most buffers one ``preadv`` takes.
_IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024
_HEADER = struct.Struct(">HH")
_DATA = 3
_ACK = 4


class BlockBuffer:
    """A file's DATA datagrams, read ahead in one reused buffer.

    Args:
        fd: the file, read with ``preadv`` (the caller keeps it open).
        machine: the transfer, for the file's size, the block size and the final block.
        budget: bytes of buffer (rounded down to whole slots, at least one).
    """

    def __init__(self, fd: int, machine: ReadTransfer, budget: int = BUFFER_BYTES) -> None:
        self.fd = fd
        self.blksize = machine.blksize
        self.last = machine.size // machine.blksize + 1
        self.slot = _HEADER.size + self.blksize
        self.count = max(1, min(budget // self.slot, _IOV_MAX))
        self.buffer = bytearray(self.count * self.slot)
        view = memoryview(self.buffer)
        slots = [view[i * self.slot : (i + 1) * self.slot] for i in range(self.count)]
        self.datagrams = slots
        self.payloads = [slot[_HEADER.size :] for slot in slots]
        self.first = 1  # the block in slot 0
        self.held = 0  # blocks in the buffer, from first
        self.end = 0  # file offset after the last byte read

    def datagram(self, block: int) -> memoryview:
        """Block ``block``'s DATA datagram (valid until the next call that reads)."""
        index = block - self.first
        if not 0 <= index < self.held:
            self._fill(block)
            index = 0
        _HEADER.pack_into(self.buffer, index * self.slot, _DATA, block & 0xFFFF)
        length = self.end - (block - 1) * self.blksize
        if length >= self.blksize:
            return self.datagrams[index]
        return self.datagrams[index][: _HEADER.size + max(0, length)]

    def _fill(self, block: int) -> None:
        offset = (block - 1) * self.blksize
        count = min(self.count, self.last - block + 1)
        got = os.preadv(self.fd, self.payloads[:count], offset)
        self.first = block
        self.held = max(1, -(-got // self.blksize))  # a short read ends the file early
        self.end = offset + got


class FastTransferThread(TransferThread):
    """:class:`~._tftp_transfer.TransferThread` with the steady state answered here."""

    #: Made at the first window: the block size is known once the options are negotiated.
    blocks: BlockBuffer | None = None

    def _wait(self, deadline: float) -> Step:
        machine = self.machine
        window = machine.window()
        if window is None:  # the OACK's answer is awaited: the machine's business
            return super()._wait(deadline)
        datagram, acked = self._pump(window[1], deadline)
        if acked >= window[1]:
            machine.acknowledge(acked)
        if machine.finished or datagram is _STOPPED:
            return DONE
        if datagram is _TIMED_OUT:
            return machine.timeout()
        return machine.receive(datagram)

    def _pump(self, on_wire: int, deadline: float) -> tuple[bytes, int]:
        """Answer ACKs until something else happens.

        Returns the first datagram that is not the ACK of the window's last block (or
        ``_TIMED_OUT`` at the deadline, ``_STOPPED`` once the transfer is over or closing),
        and the last block acknowledged here (``on_wire - 1`` and below: none).
        """
        machine = self.machine
        final = machine.size // machine.blksize + 1
        acked = on_wire - 1
        sent = False  # a window went out since the last receive timeout
        while not self.stopping:
            got, datagram = self._answer_acks(on_wire, final)
            if got >= on_wire:
                acked, sent = got, True
                if acked == final:
                    return _STOPPED, acked
                on_wire = min(acked + machine.windowsize, final)
            if datagram is not None:
                return datagram, acked
            now = time.monotonic()
            if sent:  # the clock runs from the last send, STOP_CHECK ago (or less)
                deadline = now - STOP_CHECK + machine.timeout_s
                sent = False
            if now >= deadline:
                return _TIMED_OUT, acked
        return _STOPPED, acked

    def _answer_acks(self, on_wire: int, final: int) -> tuple[int, bytes | None]:
        """While each datagram is the ACK of block ``on_wire``, send the next window.

        Returns the last block acknowledged (``on_wire - 1``: none) and the datagram that was
        something else, or ``None``: the receive timed out or failed, or ``final`` was
        acknowledged. (``_tftp_pump.pump`` in C does the same.)
        """
        if self.blocks is None:
            self.blocks = BlockBuffer(self.fd, self.machine)
        datagram_of = self.blocks.datagram
        size = self.machine.windowsize
        buffer = self.buffer
        recv_into = self.sock.recv_into
        send = self.sock.send
        expected = _HEADER.pack(_ACK, on_wire & 0xFFFF)
        acked = on_wire - 1
        while True:
            try:
                count = recv_into(buffer)
            except OSError:  # SO_RCVTIMEO expired, or an ICMP error from a client gone
                return acked, None
            if count != 4 or not buffer.startswith(expected):
                return acked, bytes(self.view[:count])
            acked = on_wire
            if acked == final:
                return acked, None
            on_wire = min(acked + size, final)
            for block in range(acked + 1, on_wire + 1):
                try:  # noqa: SIM105 (a suppress() context would be an object a block)
                    send(datagram_of(block))
                except OSError:  # lost here: sent again on timeout
                    pass
            expected = _HEADER.pack(_ACK, on_wire & 0xFFFF)


class NativeTransferThread(FastTransferThread):
    """The fast path with the steady state in C (``_tftp_pump``): no GIL, no Python, a block."""

    def _answer_acks(self, on_wire: int, final: int) -> tuple[int, bytes | None]:
        machine = self.machine
        return _tftp_pump.pump(
            self.sock.fileno(),
            self.fd,
            machine.size,
            machine.blksize,
            machine.windowsize,
            on_wire,
            final,
        )


#: The fastest transfer class this installation has.
FASTEST: type[FastTransferThread] = (
    NativeTransferThread if _tftp_pump is not None else FastTransferThread
)

#: What :meth:`FastTransferThread._pump` returns instead of a datagram.
_TIMED_OUT = b"timed out"
_STOPPED = b"stopped"
