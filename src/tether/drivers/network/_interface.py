from __future__ import annotations

from abc import abstractmethod
from contextlib import AbstractAsyncContextManager
from typing import Any

from tether.driver import Interface

__all__ = ["NetworkInterface"]


class NetworkInterface(Interface):
    """A byte-stream connection to an endpoint next to the exporter (a DUT's ssh, a web UI)."""

    name = "tether.network"
    version = 1
    client = "tether.drivers.network.NetworkClient"

    @abstractmethod
    def connect(self) -> AbstractAsyncContextManager[Any]:
        """Open a new connection to the endpoint."""
