"""Network boot services: TFTP and HTTP servers for the files a session puts there, and the
isolated DUT network (a namespace with a bridge and the board's tap) they serve on.

See docs/netboot.md.
"""

from ._client import DutNetworkClient, FileServerClient
from ._driver import HttpServer, TftpServer
from ._dutnet import DutNetwork
from ._errors import NetbootError, NetbootFileNotFound, NetbootPathRefused, NetworkSetupError
from ._interface import DutNetworkInterface, FileServerInterface
from ._netns import NetworkNamespace
from ._tftp_packets import (
    Ack,
    Data,
    ErrorCode,
    ErrorPacket,
    OptionAck,
    ReadRequest,
    TftpPacketError,
    WriteRequest,
)
from ._tftp_protocol import ReadTransfer, Step, TransferPolicy
from ._tftp_server import TftpService

__all__ = [
    "Ack",
    "Data",
    "DutNetwork",
    "DutNetworkClient",
    "DutNetworkInterface",
    "ErrorCode",
    "ErrorPacket",
    "FileServerClient",
    "FileServerInterface",
    "HttpServer",
    "NetbootError",
    "NetbootFileNotFound",
    "NetbootPathRefused",
    "NetworkNamespace",
    "NetworkSetupError",
    "OptionAck",
    "ReadRequest",
    "ReadTransfer",
    "Step",
    "TftpPacketError",
    "TftpServer",
    "TftpService",
    "TransferPolicy",
    "WriteRequest",
]
