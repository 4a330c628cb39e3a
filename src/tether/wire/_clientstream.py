"""The client's per-stream records and its byte stream (see ``_client`` for the theory)."""

from __future__ import annotations

import contextlib
import queue
import time
from typing import TYPE_CHECKING, Any

from tether.errors import CallCancelled, ConnectFailed, ConnectionLost, TetherError, error_from_wire

from ._events import Data, Error, Event

if TYPE_CHECKING:
    from ._client import ClientConnection

__all__ = ["WINDOW", "YOUR_TURN", "ClientStream", "Opening", "Slot", "Waiter", "raise_if_error"]

#: Put in a slot's queue: "the read lock is free, take your turn at reading".
YOUR_TURN = object()
#: Put in a credit slot: "look at your stream's send window again".
WINDOW = object()


def raise_if_error(event: Event | BaseException) -> None:
    """Raise what a stream's waiter got instead of its answer: a connection failure or an
    ERROR frame's error."""
    if isinstance(event, BaseException):
        raise ConnectionLost(str(event)) from event
    if type(event) is Error:
        assert isinstance(event, Error)
        raise error_from_wire(event.error)


class Slot:
    """One thread's wait: where the reader leaves its events, and whether it is waiting."""

    __slots__ = ("events", "waiting")

    def __init__(self) -> None:
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.waiting = False


class Waiter:
    """Where the reader thread leaves events for one stream (one record per stream id).

    Two slots, because a byte stream may be sent on one thread and received on another:
    ``inbox`` gets what the receiving side waits for (results, items, data, EOF, errors),
    ``credit`` wakes a sender blocked on a full window (window grew, stream ended, errors).
    One shared queue let either thread swallow the other's event.
    """

    __slots__ = ("credit", "credit_signalled", "inbox")

    def __init__(self) -> None:
        self.inbox = Slot()
        self.credit = Slot()
        #: A wake-up sits in ``credit`` (so window updates queue at most one).
        self.credit_signalled = False

    def signal_credit(self) -> None:
        """Wake the stream's sender (if it waits). The connection state already shows the
        new window, and the sender clears the flag before it looks again: none is lost."""
        if not self.credit_signalled:
            self.credit_signalled = True
            self.credit.events.put(WINDOW)


class Opening:
    """A stream being opened, filled in step by step so that an interruption at any point
    tells ``ClientConnection._abandon`` whether the frame reached the exporter."""

    __slots__ = ("sent", "sid", "size", "waiter")

    def __init__(self) -> None:
        self.sid = 0
        self.size = -1
        self.sent: list[int] = []
        self.waiter = Waiter()


class ClientStream:
    """A blocking byte stream over a connection (from ``DriverClient.stream``)."""

    def __init__(self, owner: ClientConnection, stream_id: int, waiter: Waiter) -> None:
        self._owner = owner
        self._sid = stream_id
        self._waiter = waiter
        self._eof_sent = False
        self._eof_received = False
        self._aborted = False
        self._limit = owner.conn.peer_max_frame

    def send(self, data: bytes) -> None:
        """Send bytes, blocking while the peer's window is full."""
        if self._eof_sent:
            raise ConnectFailed("send() after send_eof()")
        view = memoryview(data)
        owner = self._owner
        conn = owner.conn
        waiter = self._waiter
        while view:
            while conn.send_window(self._sid) <= 0:
                owner._check_open()
                if not conn.is_live(self._sid):
                    raise CallCancelled("the stream was closed by the peer")
                event = owner._wait(waiter.credit)
                waiter.credit_signalled = False  # before looking at the window again
                if isinstance(event, BaseException):
                    raise_if_error(event)
            chunk = view[: self._limit]
            owner._send(Data(self._sid, chunk))
            view = view[self._limit :]

    def send_eof(self) -> None:
        """Half-close: the driver's side sees end of input; receiving goes on."""
        if not self._eof_sent:
            self._eof_sent = True
            self._owner._send(Data(self._sid, b"", end=True))

    def receive(self) -> bytes:
        """Next chunk of bytes; ``b""`` once the driver ended its side."""
        if self._eof_received:
            return b""
        event = self._owner._wait(self._waiter.inbox)
        if type(event) is Data:
            assert isinstance(event, Data)
            if event.end:
                self._eof_received = True
            if event.data:
                self._owner._ack(self._sid, len(event.data))
            return bytes(event.data)
        self._eof_received = True
        raise_if_error(event)
        return b""

    def finish(self, timeout: float = 5.0) -> None:
        """Close gracefully: send EOF, drain the driver's side until its EOF, then forget.

        Data sent before closing is delivered, as with a socket. A driver that does not end
        its side within ``timeout`` seconds is cancelled.
        """
        if self._aborted:
            return
        with contextlib.suppress(TetherError):
            self.send_eof()
        deadline = time.monotonic() + timeout
        try:
            while not self._eof_received:
                if time.monotonic() > deadline:
                    self.abort()
                    return
                self.receive()
        except TetherError:
            pass
        self._owner._forget(self._sid)

    def abort(self) -> None:
        if not self._aborted:
            self._aborted = True
            self._owner._cancel(self._sid)
