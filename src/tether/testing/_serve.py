"""``serve(driver)``: a driver and its client tree in one process, over the real protocol.

The driver runs on an event loop thread; the client talks to it over a socket pair with the
same frames a remote client would use. The thread comes from :data:`SERVE_LOOPS`: the last
``serve()``'s, when nothing of its session was left on the loop (``tether.wire.LoopPool``).
Client classes are trusted (the driver is local). With the C helper built, both ends send
without the GIL and poll briefly for the answer (``tether.wire._spinning``): a call's round
trip then has no thread sleep in it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tether.driver import (
    CallDispatcher,
    ClientPolicy,
    Driver,
    DriverClient,
    DriverHost,
    build_client_tree,
)
from tether.wire import (
    DEFAULT_SPIN,
    ClientConnection,
    DeferringServerProtocol,
    LoopPool,
    ServerProtocol,
    tune_heap,
)

__all__ = ["SERVE_LOOPS", "LocalSession", "serve"]

#: Where serve() takes its loop thread: an idle one is reused when its loop is clean.
SERVE_LOOPS = LoopPool("tether-serve", spin=DEFAULT_SPIN)

#: The socket pair's send buffers and the server's read buffer, in bytes. At the kernel's
#: default (208 KiB) a byte stream's sender blocks after three 64 KiB blocks, and every turn
#: of the loop carried about that much to the driver; at 1 MiB a turn carries a dozen, for
#: fewer reads, writes to the driver's socket and GIL hand-overs per block (performance.md).
_PAIR_BUFFER = 1 << 20


class LocalSession:
    """A session over one host, for in-process serving."""

    def __init__(self, host: DriverHost) -> None:
        self.host = host
        self.handler = CallDispatcher(host)
        self.protocols: set[ServerProtocol] = set()

    def attach(self, protocol: ServerProtocol) -> None:
        self.protocols.add(protocol)

    def detach(self, protocol: ServerProtocol) -> None:
        self.protocols.discard(protocol)

    async def resolve(self, meta: dict[str, Any]) -> tuple[LocalSession, dict[str, Any]]:
        return self, {"report": self.host.report()}


@contextmanager
def serve(driver: Driver, *, name: str = "root") -> Iterator[DriverClient]:
    """Serve ``driver`` in-process and yield its client tree.

    Teardown closes the connection, then runs every driver's ``prepare_stop`` and ``stop``;
    the loop thread is then parked for the next ``serve()`` if its loop is clean, else closed.

    Raises:
        Whatever the driver's ``start`` raised.
    """
    tune_heap()
    loop_thread = SERVE_LOOPS.take()
    selector = loop_thread.selector
    host = DriverHost(driver, name)
    session = LocalSession(host)
    client_sock, server_sock = socket.socketpair()
    for sock in (client_sock, server_sock):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _PAIR_BUFFER)
    protocol: ServerProtocol | None = None

    async def open_server() -> ServerProtocol:
        try:
            await host.start()
            loop = asyncio.get_running_loop()
            _, proto = await loop.connect_accepted_socket(
                lambda: (
                    ServerProtocol(session.resolve, read_buffer=_PAIR_BUFFER)
                    if selector is None
                    else DeferringServerProtocol(
                        session.resolve, selector, read_buffer=_PAIR_BUFFER
                    )
                ),
                server_sock,
            )
        except BaseException:
            # The transport owns the socket only once the server is up; closing it ends the
            # client's handshake.
            server_sock.close()
            raise
        return proto

    connection: ClientConnection | None = None
    try:
        # The server starts while the client's Hello waits in the socket pair: the loop finds
        # its first work ready, and the client waits once, for the server's Hello.
        opened = loop_thread.submit(open_server())
        loop_thread.start()
        try:
            # Without the C helper a spin would hold the GIL the loop thread needs: none.
            connection = ClientConnection(
                client_sock,
                keepalive=None,
                handshake_timeout=None,
                spin=0.0 if selector is None else DEFAULT_SPIN,
            )
        finally:
            # A failed driver start (which ends the handshake) raises here, in its place.
            protocol = opened.result()
        yield build_client_tree(
            connection.server_meta["report"], connection, ClientPolicy(unsafe=True)
        )
    finally:
        if connection is not None:
            connection.close()
        else:
            client_sock.close()

        async def close_server() -> None:
            if protocol is not None:
                protocol.close()
            await host.stop()

        loop_thread.close(close_server())
