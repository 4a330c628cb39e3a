"""A client and a server :class:`~tether.wire.Connection` wired back to back in memory.

No sockets and no threads: ``send`` on one side returns bytes, the pair hands them to the
other side's ``receive_data`` and drains ``next_event`` until ``NEED_DATA``, exactly as an I/O
loop would. ``chunk=1`` delivers the bytes one at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tether.wire import DEFAULT_MAX_FRAME, DEFAULT_WINDOW, NEED_DATA, Connection, Event, Role

__all__ = ["ConnectionPair", "deliver", "drain"]


def drain(conn: Connection) -> list[Event]:
    """Every event ``conn`` can give without more bytes."""
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return events
        assert isinstance(event, Event)
        events.append(event)


def deliver(data: bytes, to: Connection, *, chunk: int | None = None) -> list[Event]:
    """Feed ``data`` to ``to`` (in pieces of ``chunk`` bytes when given) and drain it.

    ``b""`` is delivered as the end of the transport.
    """
    if not data:
        to.receive_data(b"")
        return drain(to)
    step = chunk or len(data)
    events: list[Event] = []
    for start in range(0, len(data), step):
        to.receive_data(data[start : start + step])
        events += drain(to)
    return events


@dataclass
class ConnectionPair:
    """A client-role and a server-role connection, and the pump between them.

    Args:
        client_window, server_window: the receive window each side grants.
        client_max_frame, server_max_frame: the largest payload each side accepts.
        chunk: deliver bytes in pieces of this size (``1``: one byte at a time).
    """

    client_window: int = DEFAULT_WINDOW
    server_window: int = DEFAULT_WINDOW
    client_max_frame: int = DEFAULT_MAX_FRAME
    server_max_frame: int = DEFAULT_MAX_FRAME
    chunk: int | None = None
    client: Connection = field(init=False)
    server: Connection = field(init=False)

    def __post_init__(self) -> None:
        self.client = Connection(
            Role.CLIENT, window=self.client_window, max_frame=self.client_max_frame
        )
        self.server = Connection(
            Role.SERVER, window=self.server_window, max_frame=self.server_max_frame
        )

    def to_server(self, event: Event) -> list[Event]:
        """The client sends ``event``; returns what the server received."""
        return deliver(self.client.send(event), self.server, chunk=self.chunk)

    def to_client(self, event: Event) -> list[Event]:
        """The server sends ``event``; returns what the client received."""
        return deliver(self.server.send(event), self.client, chunk=self.chunk)

    def handshake(self, **client_meta: object) -> ConnectionPair:
        """Exchange Hellos (the server replies with ``report``); both sides end up OPEN."""
        [client_hello] = self.to_server(self.client.hello(**client_meta))
        assert client_hello == self.server.peer_hello
        [server_hello] = self.to_client(self.server.hello(report=[]))
        assert server_hello == self.client.peer_hello
        return self
