"""``tether shell``'s way into a lease's session: :class:`RelayProxy`, a private unix socket
whose connections are carried through the controller's relay.

A connection is refused in the wire protocol's own words when the lease is over: the proxy
answers the client's Hello with ``GOAWAY lease_expired "the lease L expired at T"`` (or
``lease_ended``), so ``dut`` raises :class:`~tether.errors.LeaseExpired` and says so in one
line, and no relay is dialled once the lease's end is known.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

from tether.errors import ConnectionLost, TetherError, goaway_code
from tether.wire import GoAway, TLSChannel, copy_bytes, encode_event

from ._lease import LeasedSession

__all__ = ["RelayProxy"]

log = logging.getLogger("tether.client.lease")

#: Seconds a refused client has to read the GOAWAY and hang up.
_REFUSAL_LINGER = 5.0


class RelayProxy:
    """A private unix socket whose connections are carried through the relay to a lease's
    session: gives ``dut`` (and hooks) inside ``tether shell --selector`` a ``TETHER_HOST``.

    Each accepted connection dials the relay anew and copies bytes both ways (two threads);
    the exporter joins every relay connection of a lease to the lease's session. ``url`` is
    ``unix:///tmp/tether-lease-XXXX/relay.sock`` (the directory is 0700).
    """

    def __init__(self, session: LeasedSession, *, timeout: float = 30.0) -> None:
        self._session = session
        self._timeout = timeout
        self._dir = Path(tempfile.mkdtemp(prefix="tether-lease-"))
        self.path = self._dir / "relay.sock"
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(16)
        self.url = f"unix://{self.path}"
        self._wake_r, self._wake_w = socket.socketpair()
        self._lock = threading.Lock()
        self._open: set[Any] = set()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="tether-relay-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                try:
                    local, _ = self._listener.accept()
                except OSError:
                    continue
                threading.Thread(target=self._carry, args=(local,), daemon=True).start()

    def _carry(self, local: socket.socket) -> None:
        session = self._session
        if session.gone is not None:  # the lease's end is known: no dial
            _refuse(local, session.gone)
            return
        try:
            remote = session.dial(self._timeout)
        except TetherError as exc:
            ended = session.why_lost()
            if ended is None:
                log.warning("relay proxy: %s", exc)
                local.close()
            else:  # `dut` says why: "the lease L expired at T", not a relay error
                session.give_up(ended)
                _refuse(local, ended)
            return
        with self._lock:
            if self._closed:
                local.close()
                remote.close()
                return
            self._open.update((local, remote))
        back = threading.Thread(target=_copy, args=(remote, local), daemon=True)
        back.start()
        _copy(local, remote)
        back.join()
        with self._lock:
            self._open.difference_update((local, remote))
        local.close()
        remote.close()

    def close(self) -> None:
        """Stop accepting, cut the carried connections, remove the socket's directory."""
        with self._lock:
            self._closed = True
            carried = list(self._open)
        self._wake_w.send(b"x")
        self._thread.join()
        for each in carried:
            with contextlib.suppress(OSError):
                each.shutdown(socket.SHUT_RDWR)
        for each in (self._listener, self._wake_r, self._wake_w):
            each.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> RelayProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy(source: Any, sink: Any) -> None:
    """Copy until EOF or an error on either side, then shut the other side down."""
    write = sink.send if isinstance(sink, TLSChannel) else sink.sendall
    copy_bytes(lambda: source.recv(1 << 16), write)
    for each in (source, sink):
        with contextlib.suppress(OSError):
            each.shutdown(socket.SHUT_RDWR)


def _refuse(local: socket.socket, error: ConnectionLost) -> None:
    """Answer the client's Hello with a GOAWAY saying why, then close once it hung up."""
    with contextlib.suppress(OSError):
        local.settimeout(_REFUSAL_LINGER)
        local.sendall(encode_event(GoAway(goaway_code(error) or "session_lost", str(error))))
        local.shutdown(socket.SHUT_WR)
        while local.recv(1 << 12):  # its Hello, then EOF: closing earlier could lose the words
            pass
    local.close()
