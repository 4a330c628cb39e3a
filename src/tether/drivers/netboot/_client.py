from __future__ import annotations

import json
import os
from collections.abc import Iterator

import click

from tether.driver import ByteStream, DriverClient
from tether.errors import CallCancelled, TetherError

from ._interface import DutNetworkInterface, FileServerInterface

__all__ = ["DutNetworkClient", "FileServerClient"]

_CHUNK = 1 << 20


class FileServerClient(DriverClient):
    """Client of a TFTP or HTTP server's files: ``put`` a local file, ``list``, ``remove``."""

    interface = FileServerInterface

    def put(self, path: str | os.PathLike[str], name: str | None = None) -> dict[str, object]:
        """Upload the local file ``path`` as ``name`` (default: its base name).

        Returns:
            ``{"name", "bytes", "sha256"}`` as the exporter stored it.
        """
        name = name or os.path.basename(os.fspath(path))
        with open(path, "rb") as source:
            return self._put(name, iter(lambda: source.read(_CHUNK), b""))

    def put_bytes(self, name: str, data: bytes) -> dict[str, object]:
        """Upload ``data`` as ``name``."""
        return self._put(name, iter([data]))

    def _put(self, name: str, chunks: Iterator[bytes]) -> dict[str, object]:
        with self.stream("put", name) as stream:
            try:
                for chunk in chunks:
                    stream.send(chunk)
            except CallCancelled:
                _read_all(stream)  # the exporter failed: raises its error
                raise
            stream.send_eof()
            answer = _read_all(stream)
        if not answer:
            raise TetherError(f"{self.name}: the exporter did not confirm {name!r}")
        result: dict[str, object] = json.loads(answer)
        return result

    def list(self) -> list[str]:
        """The names of the files served."""
        return [str(name) for name in self.call("list")]

    def remove(self, name: str) -> None:
        """Stop serving ``name``."""
        self.call("remove", name)

    def address(self) -> str:
        """Where the board reaches the server."""
        return str(self.call("address"))

    def cli(self) -> click.Group:
        """``dut NODE put FILE [NAME]``."""
        group = click.Group(name=self.name)

        @group.command()
        @click.argument("file", type=click.Path(exists=True, dir_okay=False))
        @click.argument("name", required=False)
        def put(file: str, name: str | None) -> None:
            """Serve the local FILE as NAME (default: its base name)."""
            result = self.put(file, name)
            click.echo(f"{result['name']}: {result['bytes']} bytes, sha256 {result['sha256']}")

        return group


def _read_all(stream: ByteStream) -> bytes:
    parts = []
    while chunk := stream.receive():
        parts.append(chunk)
    return b"".join(parts)


class DutNetworkClient(DriverClient):
    """Client of a :class:`DutNetwork`."""

    interface = DutNetworkInterface

    def namespace(self) -> str:
        """The network namespace's name."""
        return str(self.call("namespace"))

    def server_address(self) -> str:
        """The exporter's address on the bridge."""
        return str(self.call("server_address"))

    def board_address(self) -> str:
        """The board's address."""
        return str(self.call("board_address"))

    def netmask(self) -> str:
        """The network's mask."""
        return str(self.call("netmask"))

    def add_tap(self) -> str:
        """Make a tap on the bridge; its name."""
        return str(self.call("add_tap"))

    def remove_tap(self, name: str) -> None:
        """Remove a tap."""
        self.call("remove_tap", name)
