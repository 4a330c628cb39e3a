from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tether.driver import Driver, ServiceNotFound, export, export_stream

from ._errors import NetbootError
from ._files import FileStore, PutSink
from ._http import HttpService
from ._interface import DutNetworkInterface, FileServerInterface
from ._netns import NetworkNamespace
from ._tftp_protocol import MAX_BLKSIZE, TransferPolicy
from ._tftp_server import TftpService, TransferLoop

__all__ = ["FileServer", "HttpServer", "TftpServer"]


class FileServer(FileServerInterface, Driver):
    """The session's files, shared by the TFTP and HTTP servers (see :class:`TftpServer`).

    Config:
        directory: where the session's directory is made (default: the system's
            temporary directory). It is removed, with its files, when the session ends.
    """

    directory: str = ""

    async def start(self) -> None:
        self.store = FileStore(self.node.path or self.node.name, self.directory or None)

    def stop(self) -> None:
        store = getattr(self, "store", None)
        if store is not None:
            store.close()

    async def _network(self) -> tuple[Any | None, NetworkNamespace | None]:
        """The DUT network this server ``uses:``, and a handle on its namespace."""
        try:
            network = self.incoming.connect(DutNetworkInterface)
        except ServiceNotFound:
            return None, None
        return network, NetworkNamespace(await network.namespace())

    @export_stream
    @asynccontextmanager
    async def put(self, name: str) -> AsyncIterator[PutSink]:
        """Store the bytes that come in as ``name`` (replacing a file of that name)."""
        sink = self.store.sink(name)
        try:
            yield sink
        finally:
            await sink.aclose()
        self.logger.info("stored %s (%d bytes)", name, sink.size)

    @export
    async def list(self) -> list[str]:
        """The names of the files served, sorted."""
        return self.store.list()

    @export
    async def remove(self, name: str) -> None:
        """Stop serving ``name`` and delete it."""
        self.store.remove(name)

    @export
    async def address(self) -> str:
        """Where the board reaches the server."""
        raise NotImplementedError


class TftpServer(FileServer):
    """A read-only TFTP server (RFC 1350; options blksize, tsize, timeout, windowsize) for
    the files the client puts there.

    With ``uses: {network: NODE}`` (a :class:`DutNetwork`) it listens on the network's
    server address inside its namespace, where the board's tap is; ``host`` is then ignored.

    Config:
        host: the address to listen on.
        port: the UDP port (69, the standard one, needs root).
        timeout: seconds before a block is sent again (a client's ``timeout`` option wins).
        retries: timeouts in a row before a transfer is abandoned.
        max_blksize: the largest block size granted.
        max_windowsize: the largest window granted (RFC 7440).
        max_transfers: transfers served at once; a request beyond them gets an ERROR.
        transfer_loop: ``fastest`` (default), ``native`` (the C pump), ``python`` or
            ``reference`` (every datagram through the state machine; for debugging).
        directory: see :class:`FileServer`.
    """

    host: str = "0.0.0.0"
    port: int = 69
    timeout: float = 1.0
    retries: int = 5
    max_blksize: int = MAX_BLKSIZE
    max_windowsize: int = 64
    max_transfers: int = 64
    transfer_loop: TransferLoop = "fastest"

    async def start(self) -> None:
        await super().start()
        policy = TransferPolicy(
            timeout=self.timeout,
            retries=self.retries,
            max_blksize=max(8, min(self.max_blksize, MAX_BLKSIZE)),
            max_windowsize=max(1, self.max_windowsize),
        )
        network, namespace = await self._network()
        host = self.host if network is None else await network.server_address()
        self._namespace = namespace
        factory = (
            (lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            if namespace is None
            else namespace.socket
        )
        try:
            self.service = TftpService(
                self.store,
                host,
                self.port,
                policy=policy,
                socket_factory=factory,
                logger=self.logger,
                max_transfers=max(1, self.max_transfers),
                transfer_loop=self.transfer_loop,
            )
            await self.service.start()
        except NetbootError as exc:
            raise NetbootError(f"{self.node.path or self.node.name}: {exc}") from exc

    async def prepare_stop(self) -> None:
        service = getattr(self, "service", None)
        if service is not None:
            await service.close()
        namespace = getattr(self, "_namespace", None)
        if namespace is not None:
            namespace.close()

    @export
    async def address(self) -> str:
        """``host:port`` the server listens on."""
        host, port = self.service.address
        return f"{host}:{port}"


class HttpServer(FileServer):
    """An HTTP/1.1 server (GET, HEAD, byte ranges) for the files the client puts there.

    With ``uses: {network: NODE}`` (a :class:`DutNetwork`) it listens on the network's
    server address inside its namespace; ``host`` is then ignored.

    Config:
        host: the address to listen on.
        port: the TCP port (0: a free one).
        directory: see :class:`FileServer`.
    """

    host: str = "0.0.0.0"
    port: int = 80

    async def start(self) -> None:
        await super().start()
        network, namespace = await self._network()
        host = self.host if network is None else await network.server_address()
        sock = None if namespace is None else namespace.socket(socket.AF_INET, socket.SOCK_STREAM)
        if namespace is not None:
            namespace.close()
        self.service = HttpService(self.store, host, self.port, sock=sock, logger=self.logger)
        try:
            await self.service.start()
        except NetbootError as exc:
            if sock is not None:
                sock.close()
            raise NetbootError(f"{self.node.path or self.node.name}: {exc}") from exc

    async def prepare_stop(self) -> None:
        service = getattr(self, "service", None)
        if service is not None:
            await service.close()

    @export
    async def address(self) -> str:
        """The server's URL, ``http://host:port/``."""
        host, port = self.service.address
        return f"http://{host}:{port}/"
