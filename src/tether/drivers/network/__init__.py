"""Network: byte streams to TCP, UDP and unix-socket endpoints reachable from the exporter.

UDP datagrams travel over the stream as frames: a 2-byte big-endian length, then the payload.
:class:`DatagramClient` frames and unframes them for you.
"""

from ._client import DatagramClient, DatagramConnection, NetworkClient
from ._datagram import FrameDecoder, encode_frame
from ._driver import TcpNetwork, UdpNetwork, UnixNetwork
from ._interface import DatagramInterface, NetworkInterface

__all__ = [
    "DatagramClient",
    "DatagramConnection",
    "DatagramInterface",
    "FrameDecoder",
    "NetworkClient",
    "NetworkInterface",
    "TcpNetwork",
    "UdpNetwork",
    "UnixNetwork",
    "encode_frame",
]
