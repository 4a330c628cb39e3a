"""``MockTransport``: a client transport that answers from a function, with no socket.

For tests of client code (a typed driver client, a script) without an exporter, as httpx's
``MockTransport`` is for HTTP: every frame the :class:`~tether.wire.ClientConnection` sends
goes through a real server-role :class:`~tether.wire.Connection` (so the protocol is checked
as it would be on the wire), and calls are answered by ``handler(node, method, args,
kwargs)``. A returned iterator answers a streaming call item by item; a raised
:class:`~tether.errors.CallError` reaches the caller as itself, anything else as a
:class:`~tether.errors.DriverError`. Byte streams are refused (``MethodNotFound``).

Example::

    from tether.wire import ClientConnection, MockTransport

    def handler(node, method, args, kwargs):
        return {"on": True}[method]

    connection = ClientConnection(MockTransport(handler), keepalive=None)
    assert connection.call("root", "on", [], {}) is True
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

from tether.errors import CallError, DriverError, MethodNotFound

from ._connection import NEED_DATA, Connection
from ._events import Call, Error, GoAway, Hello, Item, OpenStream, Ping, Pong, Result
from ._handler import short_error
from ._state import Role
from ._transports import ClientTransport

__all__ = ["MockTransport"]

Handler = Callable[[str, str, list[Any], dict[str, Any]], Any]


class MockTransport(ClientTransport):
    """An in-memory transport whose peer is ``handler`` (see the module docstring).

    Args:
        handler: answers each call.
        meta: the server Hello's metadata (e.g. ``{"report": [...]}`` for a client tree).

    Attributes:
        calls: every call received, as ``(node, method, args, kwargs)``.
    """

    def __init__(self, handler: Handler, *, meta: dict[str, Any] | None = None) -> None:
        self.handler = handler
        self.meta = dict(meta or {})
        self.calls: list[tuple[str, str, list[Any], dict[str, Any]]] = []
        self._server = Connection(Role.SERVER)
        self._out = bytearray()
        self._ready = threading.Condition()
        self._closed = False

    def send(self, parts: list[Any], counts: list[int]) -> None:
        if self._closed:
            raise BrokenPipeError("MockTransport: closed")
        data = b"".join(bytes(part) for part in parts)
        counts.append(len(data))
        server = self._server
        server.receive_data(data)
        answers: list[bytes] = []
        while (event := server.next_event()) is not NEED_DATA:
            answers.extend(self._answer(event))
        with self._ready:
            for answer in answers:
                self._out += answer
            self._ready.notify_all()

    def _answer(self, event: object) -> Iterator[bytes]:
        server = self._server
        if isinstance(event, Hello):
            yield server.send(server.hello(**self.meta))
        elif isinstance(event, Ping):
            yield server.send(Pong(event.payload))
        elif isinstance(event, GoAway):
            self._closed = True
        elif isinstance(event, OpenStream):
            error = MethodNotFound("MockTransport serves no byte streams")
            yield server.send(Error(event.stream_id, error.to_wire()))
        elif isinstance(event, Call):
            yield from self._call(event)

    def _call(self, call: Call) -> Iterator[bytes]:
        server, sid = self._server, call.stream_id
        self.calls.append((call.node, call.method, list(call.args), dict(call.kwargs)))
        try:
            value = self.handler(call.node, call.method, list(call.args), dict(call.kwargs))
            if isinstance(value, Iterator):
                for item in value:
                    yield server.send(Item(sid, item))
                value = None
            yield server.send(Result(sid, value))
        except CallError as exc:
            yield server.send(Error(sid, short_error(exc)))
        except Exception as exc:
            error = DriverError(str(exc), remote_type=type(exc).__qualname__)
            yield server.send(Error(sid, short_error(error)))

    def receive(self, timeout: float | None, *, soon: bool = True) -> bytes:
        with self._ready:
            if not self._ready.wait_for(lambda: self._out or self._closed, timeout):
                raise TimeoutError("MockTransport: nothing to receive")
            return self._take()

    def receive_nowait(self) -> bytes | None:
        with self._ready:
            return self._take() if self._out or self._closed else None

    def _take(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data

    def shutdown(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify_all()
