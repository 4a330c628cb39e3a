"""Network: byte streams to TCP and unix-socket endpoints reachable from the exporter."""

from ._client import NetworkClient
from ._driver import TcpNetwork, UnixNetwork
from ._interface import NetworkInterface

__all__ = ["NetworkClient", "NetworkInterface", "TcpNetwork", "UnixNetwork"]
