"""The server side of one TFTP read transfer, sans-IO: datagrams in, datagrams and timers out.

Theory of operation. A :class:`ReadTransfer` is built from a parsed read request, the file's
size and a ``read(offset, size)`` function. :meth:`ReadTransfer.start` negotiates the options
(RFC 2347: ``blksize`` 2348, ``tsize`` and ``timeout`` 2349, ``windowsize`` 7440) and returns
the first datagrams: an OACK when any option was accepted, else the first window of DATA.
After that, every datagram from the client goes to :meth:`receive` and every expired timer to
:meth:`timeout`; each returns a :class:`Step`: the datagrams to send, and the timer to (re)arm
(``None`` once the transfer is over). Which handler runs is looked up in one table keyed by
``(state, event)``; a pair missing from the table is an illegal operation, answered with an
ERROR packet that ends the transfer.

Blocks are counted from 1 without bound here; on the wire their number is taken modulo
65,536, so files beyond 65,535 blocks roll over to block 0 (as tftp-hpa, curl and U-Boot do).
A file whose size is a multiple of the block size ends with an empty block. The sender sends
``windowsize`` blocks, then waits for the client's ACK of the last one; an ACK of an earlier
block of the window sends the window again from the block after it. A repeated ACK of the
block before the window is ignored in lock-step mode (``windowsize`` 1), which avoids the
Sorcerer's Apprentice bug of RFC 1350.

The fast path's step. In the steady state every datagram is the ACK of the window's last
block and the answer is the next window. :meth:`ReadTransfer.window` tells an I/O loop
(``_tftp_fast``) which ACK that is; the loop answers it and the following ones itself, from its
own buffer, and calls :meth:`ReadTransfer.acknowledge` before anything else reaches the
machine, which then catches up: same state, same counts, as if each ACK had gone through
:meth:`ReadTransfer.receive`.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from ._tftp_packets import (
    Ack,
    ErrorCode,
    ErrorPacket,
    OptionAck,
    ReadRequest,
    TftpPacketError,
    encode,
    parse,
)

__all__ = ["DEFAULT_BLKSIZE", "MAX_BLKSIZE", "ReadTransfer", "Step", "TransferPolicy"]

DEFAULT_BLKSIZE = 512
MAX_BLKSIZE = 65464
_DATA_HEADER = struct.Struct(">HH")


@dataclass(frozen=True, slots=True)
class TransferPolicy:
    """What the server allows.

    Attributes:
        timeout: seconds to wait for an ACK before sending again (a client's ``timeout``
            option replaces it for its transfer).
        retries: timeouts in a row before the transfer is given up.
        max_blksize: the largest ``blksize`` accepted (a larger request gets this).
        max_windowsize: the largest ``windowsize`` accepted.
    """

    timeout: float = 1.0
    retries: int = 5
    max_blksize: int = MAX_BLKSIZE
    max_windowsize: int = 64


class Step(NamedTuple):
    """What to do after an event (a named tuple: one is made for every block).

    Attributes:
        send: datagrams to send to the client, in order.
        timer: seconds until :meth:`ReadTransfer.timeout` is due; ``None``: the transfer is
            over, close it.
    """

    send: list[bytes]
    timer: float | None


class State(enum.Enum):
    IDLE = "idle"
    OACK_SENT = "oack-sent"
    SENDING = "sending"
    DONE = "done"
    FAILED = "failed"


class Event(enum.Enum):
    START = "start"
    ACK = "ack"
    ERROR = "error"
    TIMEOUT = "timeout"
    OTHER = "other"


def _int_option(value: str, low: int, high: int) -> int | None:
    try:
        number = int(value)
    except ValueError:
        return None
    return number if low <= number <= high else None


class ReadTransfer:
    """One RRQ being served (see the module docstring).

    Attributes:
        blksize, windowsize, timeout_s: the negotiated values.
        state: where the transfer is; ``error`` says why it failed.
        sent_bytes: payload bytes sent, retransmissions included.
    """

    def __init__(
        self,
        request: ReadRequest,
        size: int,
        read: Callable[[int, int], bytes],
        policy: TransferPolicy = TransferPolicy(),
    ) -> None:
        self.request = request
        self.size = size
        self._read = read
        self.policy = policy
        self.state = State.IDLE
        self.error: str | None = None
        self.blksize = DEFAULT_BLKSIZE
        self.windowsize = 1
        self.timeout_s = policy.timeout
        self.sent_bytes = 0
        self.retransmits = 0
        self._accepted: dict[str, str] = {}
        self._base = 1  # first block not yet acknowledged
        self._last = 0  # the final block's number
        self._retries = 0

    # -- public events ------------------------------------------------------------------------

    def start(self) -> Step:
        """Negotiate the options; the OACK or the first window."""
        return self._dispatch(Event.START, None)

    def receive(self, datagram: bytes) -> Step:
        """A datagram from the client."""
        if len(datagram) == 4 and datagram[1] == 4 and datagram[0] == 0:
            # An ACK, the one datagram of the steady state: straight to the table's handler.
            return self._dispatch(Event.ACK, (datagram[2] << 8) | datagram[3])
        try:
            packet = parse(datagram)
        except TftpPacketError as exc:
            return self._dispatch(Event.OTHER, str(exc))
        if isinstance(packet, Ack):
            return self._dispatch(Event.ACK, packet.block)
        if isinstance(packet, ErrorPacket):
            return self._dispatch(Event.ERROR, packet)
        return self._dispatch(Event.OTHER, f"unexpected {type(packet).__name__} packet")

    def timeout(self) -> Step:
        """The timer of the last step expired without an answer."""
        return self._dispatch(Event.TIMEOUT, None)

    def window(self) -> tuple[int, int] | None:
        """The first and last block (counted from 1) of the window on the wire, or ``None``
        when no DATA is being sent (options not yet acknowledged, or the transfer is over)."""
        if self.state is not State.SENDING:
            return None
        return self._base, min(self._base + self.windowsize - 1, self._last)

    def acknowledge(self, acked: int) -> tuple[int, int] | None:
        """The fast path's step: the machine catches up with windows its caller sent itself.

        The caller answered the ACK of the last block of :meth:`window` with the next window,
        that one's ACK with the next, and so on, up to the ACK of block ``acked`` (counted from
        1); the machine ends in the state those ACKs would have left it in through
        :meth:`receive`, counting the blocks as sent.

        Returns:
            the window now on the wire (first, last), or ``None``: ``acked`` was the final
            block, the transfer is done.

        Raises:
            RuntimeError: no window is being sent, or ``acked`` is not a window's last block
                from :meth:`window` on.
        """
        window = self.window()
        if window is None or not (
            window[1] <= acked <= self._last
            and (acked == self._last or (acked - window[1]) % self.windowsize == 0)
        ):
            raise RuntimeError(f"acknowledge({acked}) in state {self.state.value}")
        self.sent_bytes += self._payload(window[1] + 1, acked)
        return self._advance(acked)

    def abort(self, message: str) -> Step:
        """The server cannot go on (reading the file failed): the ERROR that ends it."""
        if self.finished:
            return Step([], None)
        return self._fail(ErrorCode.NOT_DEFINED, message, None)

    @property
    def finished(self) -> bool:
        """Done or failed."""
        return self.state in (State.DONE, State.FAILED)

    # -- the table ------------------------------------------------------------------------------

    def _dispatch(self, event: Event, arg: object) -> Step:
        handler = _TABLE.get((self.state, event))
        if handler is None:
            if self.finished:
                return Step([], None)
            what = f"{event.value} in state {self.state.value}"
            return self._fail(ErrorCode.ILLEGAL_OPERATION, f"illegal TFTP operation: {what}", arg)
        return handler(self, arg)

    def _on_start(self, _: object) -> Step:
        self._negotiate()
        self._last = self.size // self.blksize + 1
        if self._accepted:
            self.state = State.OACK_SENT
            return Step([encode(OptionAck(self._accepted))], self.timeout_s)
        self.state = State.SENDING
        return self._send_window()

    def _on_oack_ack(self, block: object) -> Step:
        if block != 0:
            return Step([], self.timeout_s)  # not the OACK's answer: keep waiting
        self.state = State.SENDING
        self._retries = 0
        return self._send_window()

    def _on_ack(self, block: object) -> Step:
        assert isinstance(block, int)
        sent_upto = min(self._base + self.windowsize - 1, self._last)
        acked = self._base - 1 + ((block - (self._base - 1)) & 0xFFFF)
        if acked > sent_upto:
            return Step([], self.timeout_s)  # an old ACK from before a roll-over
        if acked == self._base - 1 and self.windowsize == 1:
            return Step([], self.timeout_s)  # a duplicate: the timer resends if needed
        if acked < sent_upto:
            self.retransmits += 1
        window = self._advance(acked)
        if window is None:
            return Step([], None)
        return Step(self._datagrams(*window), self.timeout_s)

    def _on_timeout(self, _: object) -> Step:
        self._retries += 1
        if self._retries > self.policy.retries:
            return self._fail(
                ErrorCode.NOT_DEFINED,
                f"no answer from the client after {self.policy.retries} retries",
                None,
            )
        self.retransmits += 1
        if self.state is State.OACK_SENT:
            return Step([encode(OptionAck(self._accepted))], self.timeout_s)
        return self._send_window()

    def _on_client_error(self, packet: object) -> Step:
        assert isinstance(packet, ErrorPacket)
        self.state = State.FAILED
        self.error = f"the client ended the transfer: {packet.message} (code {packet.code})"
        return Step([], None)

    def _on_other(self, why: object) -> Step:
        return self._fail(ErrorCode.ILLEGAL_OPERATION, f"illegal TFTP operation: {why}", None)

    # -- helpers --------------------------------------------------------------------------------

    def _fail(self, code: ErrorCode, message: str, _: object) -> Step:
        self.state = State.FAILED
        self.error = message
        return Step([encode(ErrorPacket(code, message))], None)

    def _negotiate(self) -> None:
        options = self.request.options
        policy = self.policy
        if "blksize" in options:
            value = _int_option(options["blksize"], 8, MAX_BLKSIZE)
            if value is not None:
                self.blksize = min(value, policy.max_blksize)
                self._accepted["blksize"] = str(self.blksize)
        if "tsize" in options:
            self._accepted["tsize"] = str(self.size)
        if "timeout" in options:
            value = _int_option(options["timeout"], 1, 255)
            if value is not None:
                self.timeout_s = float(value)
                self._accepted["timeout"] = str(value)
        if "windowsize" in options:
            value = _int_option(options["windowsize"], 1, 65535)
            if value is not None:
                self.windowsize = min(value, policy.max_windowsize)
                self._accepted["windowsize"] = str(self.windowsize)

    def _advance(self, acked: int) -> tuple[int, int] | None:
        """Blocks up to ``acked`` arrived: the next window (counted as sent), or ``None``."""
        self._retries = 0
        if acked == self._last:
            self.state = State.DONE
            return None
        self._base = acked + 1
        return self._count_window()

    def _count_window(self) -> tuple[int, int]:
        """The window from ``_base``, its payload counted as sent."""
        first, last = self._base, min(self._base + self.windowsize - 1, self._last)
        self.sent_bytes += self._payload(first, last)
        return first, last

    def _payload(self, first: int, last: int) -> int:
        """Payload bytes in blocks ``first`` to ``last`` (0 when there are none)."""
        return max(0, min(last * self.blksize, self.size) - (first - 1) * self.blksize)

    def _send_window(self) -> Step:
        return Step(self._datagrams(*self._count_window()), self.timeout_s)

    def _datagrams(self, first: int, last: int) -> list[bytes]:
        out: list[bytes] = []
        size = self.blksize
        for block in range(first, last + 1):
            offset = (block - 1) * size
            payload = (
                self._read(offset, min(size, self.size - offset)) if offset < self.size else b""
            )
            out.append(_DATA_HEADER.pack(3, block & 0xFFFF) + payload)
        return out


_Handler = Callable[[ReadTransfer, object], Step]

#: Every legal (state, event) pair and its handler; anything else is an illegal operation.
_TABLE: dict[tuple[State, Event], _Handler] = {
    (State.IDLE, Event.START): ReadTransfer._on_start,
    (State.OACK_SENT, Event.ACK): ReadTransfer._on_oack_ack,
    (State.OACK_SENT, Event.TIMEOUT): ReadTransfer._on_timeout,
    (State.OACK_SENT, Event.ERROR): ReadTransfer._on_client_error,
    (State.OACK_SENT, Event.OTHER): ReadTransfer._on_other,
    (State.SENDING, Event.ACK): ReadTransfer._on_ack,
    (State.SENDING, Event.TIMEOUT): ReadTransfer._on_timeout,
    (State.SENDING, Event.ERROR): ReadTransfer._on_client_error,
    (State.SENDING, Event.OTHER): ReadTransfer._on_other,
}
