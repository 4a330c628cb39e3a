from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractAsyncContextManager
from typing import Any

from tether.driver import Interface

__all__ = ["DatagramInterface", "NetworkInterface"]


class NetworkInterface(Interface):
    """A byte-stream connection to an endpoint next to the exporter (a DUT's ssh, a web UI)."""

    name = "tether.network"
    version = 1
    client = "tether.drivers.network.NetworkClient"

    @abstractmethod
    def connect(self) -> AbstractAsyncContextManager[Any]:
        """Open a new connection to the endpoint."""

    @abstractmethod
    async def address(self) -> str:
        """Where the exporter connects."""


class DatagramInterface(Interface):
    """Datagrams to and from an endpoint next to the exporter, framed over a byte stream
    (each datagram: a 2-byte big-endian length, then the payload)."""

    name = "tether.network.datagram"
    version = 1
    client = "tether.drivers.network.DatagramClient"

    @abstractmethod
    def connect(self) -> AbstractAsyncContextManager[Any]:
        """Open a new socket to the endpoint; a stream of framed datagrams."""

    @abstractmethod
    async def address(self) -> str:
        """Where the exporter sends."""
