from __future__ import annotations

from contextlib import AbstractContextManager

from tether.driver import ByteStream, DriverClient

from ._interface import NetworkInterface

__all__ = ["NetworkClient"]


class NetworkClient(DriverClient):
    """Client of :class:`NetworkInterface`."""

    interface = NetworkInterface

    def connect(self) -> AbstractContextManager[ByteStream]:
        """Open a byte stream to the endpoint (a context manager)."""
        return self.stream("connect")

    def address(self) -> str:
        """Where the exporter connects."""
        return str(self.call("address"))
