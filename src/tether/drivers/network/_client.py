from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from tether.driver import ByteStream, DriverClient

from ._datagram import FrameDecoder, encode_frame
from ._interface import DatagramInterface, NetworkInterface

__all__ = ["DatagramClient", "DatagramConnection", "NetworkClient"]


class NetworkClient(DriverClient):
    """Client of :class:`NetworkInterface`."""

    interface = NetworkInterface

    def connect(self) -> AbstractContextManager[ByteStream]:
        """Open a byte stream to the endpoint (a context manager)."""
        return self.stream("connect")

    def address(self) -> str:
        """Where the exporter connects."""
        return str(self.call("address"))


class DatagramConnection:
    """Send and receive whole datagrams over a framed stream."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._decoder = FrameDecoder()
        self._ready: list[bytes] = []

    def send(self, datagram: bytes) -> None:
        """Send one datagram (at most 65,535 bytes)."""
        self._stream.send(encode_frame(datagram))

    def receive(self) -> bytes | None:
        """The next datagram, waiting for it; ``None`` once the stream ended."""
        while not self._ready:
            chunk = self._stream.receive()
            if not chunk:
                return None
            self._ready.extend(self._decoder.feed(chunk))
        return self._ready.pop(0)


class DatagramClient(DriverClient):
    """Client of :class:`DatagramInterface` (UDP)."""

    interface = DatagramInterface

    @contextmanager
    def connect(self) -> Iterator[DatagramConnection]:
        """Open a socket on the exporter; yields a :class:`DatagramConnection`."""
        with self.stream("connect") as stream:
            yield DatagramConnection(stream)

    def address(self) -> str:
        """Where the exporter sends."""
        return str(self.call("address"))
