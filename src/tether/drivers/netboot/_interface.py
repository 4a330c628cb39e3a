from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractAsyncContextManager
from typing import Any

from tether.driver import Interface

__all__ = ["DutNetworkInterface", "FileServerInterface"]


class FileServerInterface(Interface):
    """A server on the exporter that serves files the client put there to the board.

    The files belong to the session: they start empty and are removed when it ends.
    """

    name = "tether.netboot.files"
    version = 1
    client = "tether.drivers.netboot.FileServerClient"

    @abstractmethod
    def put(self, name: str) -> AbstractAsyncContextManager[Any]:
        """Byte stream: the file's bytes in; after EOF one JSON line (name, bytes, sha256)."""

    @abstractmethod
    async def list(self) -> list[str]:
        """The names of the files served, sorted."""

    @abstractmethod
    async def remove(self, name: str) -> None:
        """Stop serving ``name`` and delete it."""

    @abstractmethod
    async def address(self) -> str:
        """Where the board reaches the server (``host:port`` or a URL)."""


class DutNetworkInterface(Interface):
    """An isolated network for the board: a namespace with a bridge, and taps for boards."""

    name = "tether.netboot.dut_network"
    version = 1
    client = "tether.drivers.netboot.DutNetworkClient"

    @abstractmethod
    async def namespace(self) -> str:
        """The network namespace's name (``ip netns exec NAME ...``)."""

    @abstractmethod
    async def server_address(self) -> str:
        """The exporter's address on the bridge (the board's ``serverip``)."""

    @abstractmethod
    async def board_address(self) -> str:
        """The address the board is given (its ``ipaddr``)."""

    @abstractmethod
    async def netmask(self) -> str:
        """The network's mask, dotted (``255.255.255.0``)."""

    @abstractmethod
    async def add_tap(self) -> str:
        """Make a tap device on the bridge for a board; its name."""

    @abstractmethod
    async def remove_tap(self, name: str) -> None:
        """Remove a tap device made by :meth:`add_tap`."""
