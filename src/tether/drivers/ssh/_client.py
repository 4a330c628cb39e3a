"""``SshClient``: commands, files, forwards and a shell on an SSH device, and ``dut`` commands.

``dut NODE run CMD`` prints the output as it comes and exits with the command's status;
``dut NODE shell`` is an interactive shell with a pty (Ctrl-] leaves); ``dut NODE put LOCAL
REMOTE`` and ``dut NODE get REMOTE LOCAL`` copy files (``-`` is stdin/stdout);
``dut NODE forward PORT`` listens on a local port forwarded to the device's ``PORT``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any, BinaryIO

import click

from tether.client import PortForward
from tether.driver import ByteStream, DriverClient
from tether.drivers.console import CommandResult
from tether.errors import DriverError

from ._errors import remote_error
from ._interface import SshInterface, SshOutput
from ._terminal import ShellChannel, run_shell, terminal_size

__all__ = ["SshClient"]

_CHUNK = 1 << 20


@contextlib.contextmanager
def _ssh_errors() -> Iterator[None]:
    """The exporter's SSH errors as the same classes here (``SshUnreachable``, ...)."""
    try:
        yield
    except DriverError as exc:
        mapped = remote_error(exc)
        if mapped is exc:
            raise
        raise mapped from None


class _PortView(DriverClient):
    """One forwarded port of an :class:`SshClient`, for :class:`PortForward`."""

    def __init__(self, owner: SshClient, port: int, host: str) -> None:
        report = {**owner.report, "methods": {"forward": owner.methods["forward"]}}
        super().__init__(target=owner._target, report=report)
        self._port = port
        self._host = host

    def stream(self, method: str, *args: Any, **kwargs: Any) -> AbstractContextManager[ByteStream]:
        return super().stream(method, self._port, self._host)


class SshClient(DriverClient):
    """Client of :class:`SshInterface`."""

    interface = SshInterface

    def run(self, command: str, timeout: float = 30.0) -> CommandResult:
        """Run ``command`` on the device; its output and exit status.

        Raises:
            SshCommandTimeout, SshUnreachable, SshAuthFailed, SshHostKeyRefused,
            SshDisconnected: as raised on the exporter.
        """
        with _ssh_errors():
            result: CommandResult = self.call("run", command, timeout)
            return result

    def run_stream(self, command: str, timeout: float = 30.0) -> Iterator[SshOutput]:
        """Run ``command``; yield stdout/stderr chunks as they come, the ``exit`` item last."""
        with _ssh_errors():
            yield from self.streaming_call("run_stream", command, timeout)

    def put(
        self,
        source: str | os.PathLike[str] | bytes | IO[bytes],
        remote_path: str,
        mode: int | None = None,
    ) -> int:
        """Copy ``source`` (a local path, bytes, or a binary file object) to ``remote_path``.

        Returns:
            The bytes written, as the device confirmed them.

        Raises:
            SshTransferFailed: the device refused (no such directory, permission denied).
        """
        with _ssh_errors(), contextlib.ExitStack() as stack:
            if isinstance(source, bytes | bytearray | memoryview):
                reader: Any = None
                data: bytes | None = bytes(source)
            elif isinstance(source, str | os.PathLike):
                reader = stack.enter_context(open(source, "rb"))
                data = None
            else:
                reader, data = source, None
            stream = stack.enter_context(self.stream("put", remote_path, mode))
            if data is not None:
                for start in range(0, len(data), _CHUNK):
                    stream.send(data[start : start + _CHUNK])
            else:
                while chunk := reader.read(_CHUNK):
                    stream.send(chunk)
            stream.send_eof()
            answer = b""
            while chunk := stream.receive():
                answer += chunk
            return int(json.loads(answer)["bytes"])

    def get(
        self, remote_path: str, target: str | os.PathLike[str] | IO[bytes] | None = None
    ) -> Any:
        """Copy the device's ``remote_path``: returned as bytes, or written to ``target`` (a
        path or a binary file object), then the size is returned."""
        with _ssh_errors(), self.stream("get", remote_path) as stream:
            stream.send_eof()
            if target is None:
                parts = []
                while chunk := stream.receive():
                    parts.append(chunk)
                return b"".join(parts)
            with contextlib.ExitStack() as stack:
                out: Any = (
                    stack.enter_context(open(target, "wb"))
                    if isinstance(target, str | os.PathLike)
                    else target
                )
                size = 0
                while chunk := stream.receive():
                    out.write(chunk)
                    size += len(chunk)
                return size

    def forward(self, port: int, host: str = "localhost") -> AbstractContextManager[ByteStream]:
        """A byte stream to ``host:port`` as the device sees it (a context manager).

        Raises:
            SshForwardRefused: the device cannot connect there.
        """

        @contextlib.contextmanager
        def opened() -> Iterator[ByteStream]:
            with _ssh_errors(), self.stream("forward", port, host) as stream:
                yield stream

        return opened()

    def forward_local(self, port: int, host: str = "localhost", local_port: int = 0) -> PortForward:
        """A local TCP listener forwarded to the device's ``host:port`` (like ``ssh -L``);
        use it as a context manager, ``.port`` is the local port."""
        return PortForward(_PortView(self, port, host), "forward", port=local_port)

    def open_shell(
        self, term: str = "xterm-256color", cols: int = 80, rows: int = 24, pty: bool = True
    ) -> AbstractContextManager[ShellChannel]:
        """A shell on the device as a :class:`ShellChannel` (for scripts and tests)."""

        @contextlib.contextmanager
        def opened() -> Iterator[ShellChannel]:
            with _ssh_errors(), self.stream("shell", term, cols, rows, pty) as stream:
                yield ShellChannel(stream)

        return opened()

    def shell(
        self,
        escape: bytes | None = b"\x1d",
        *,
        stdin_fd: int | None = None,
        stdout_fd: int | None = None,
        stderr_fd: int | None = None,
    ) -> int | None:
        """An interactive shell on this terminal (a pty on the device, raw mode here).

        Without a terminal on stdin, the shell runs without a pty and reads stdin as a
        script. Returns its exit status, or ``None`` when the escape key left it.
        """
        stdin = sys.stdin.fileno() if stdin_fd is None else stdin_fd
        stdout = sys.stdout.fileno() if stdout_fd is None else stdout_fd
        stderr = sys.stderr.fileno() if stderr_fd is None else stderr_fd
        is_tty = os.isatty(stdin)
        cols, rows = terminal_size(stdin)
        term = os.environ.get("TERM") or "xterm-256color"
        with self.open_shell(term, cols, rows, pty=is_tty) as channel, _ssh_errors():
            banner = None
            if is_tty and escape is not None:
                banner = f"Connected to {self.name}; Ctrl-{chr(escape[0] + 0x40)} leaves."
            return run_shell(
                channel,
                stdin_fd=stdin,
                stdout_fd=stdout,
                stderr_fd=stderr,
                escape=escape if is_tty else None,
                banner=banner,
            )

    def address(self) -> str:
        """``user@host:port`` of the device."""
        return str(self.call("address"))

    def cli(self) -> click.Group:
        """``run``, ``shell`` (and ``console``, the same), ``put``, ``get`` and ``forward``
        for ``dut``."""
        return _ssh_cli(self)


def _exit(status: int) -> None:
    if status != 0:
        click.get_current_context().exit(status if 0 < status < 256 else 1)


def _fail(exc: DriverError) -> click.ClickException:
    return click.ClickException(str(remote_error(exc).message))


def _ssh_cli(client: SshClient) -> click.Group:
    group = click.Group(name=client.name)

    @group.command(
        context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
    )
    @click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
    @click.option("--timeout", type=float, default=30.0, show_default=True, help="Seconds.")
    def run(command: tuple[str, ...], timeout: float) -> None:
        """Run COMMAND on the device; print its output, exit with its status.

        The words after the options are the command line (``dut NODE run uname -a``); quote
        shell syntax (``dut NODE run "make && make test"``). --timeout goes before them."""
        out: BinaryIO = sys.stdout.buffer
        err: BinaryIO = sys.stderr.buffer
        status = 1
        try:
            for item in client.run_stream(" ".join(command), timeout):
                if item.kind == "exit":
                    status = item.status if item.status is not None else 1
                else:
                    target = out if item.kind == "stdout" else err
                    target.write(item.data)
                    target.flush()
        except DriverError as exc:
            raise _fail(exc) from None
        _exit(status)

    @group.command()
    @click.option(
        "--escape",
        default="^]",
        show_default=True,
        help="The key that leaves: ^X for Ctrl-X, one character, or 'none'.",
    )
    def shell(escape: str) -> None:
        """Interactive shell on the device (a pty; Ctrl-C goes to the device). Without a
        terminal, stdin is the script and the exit status is the shell's."""
        key = None if escape == "none" else _parse_escape(escape)
        try:
            status = client.shell(key)
        except DriverError as exc:
            raise _fail(exc) from None
        if status is None:
            click.echo("\r\nshell left (escape)", err=True)
            return
        _exit(status)

    console = click.Command(
        name="console",
        callback=shell.callback,
        params=list(shell.params),
        help="The same as shell (an SSH node's console is its shell).",
        short_help="The same as shell.",
    )
    group.add_command(console)

    @group.command()
    @click.argument("local", type=click.Path(dir_okay=False, allow_dash=True))
    @click.argument("remote")
    @click.option("--mode", type=str, default=None, help="Octal permissions, e.g. 755.")
    def put(local: str, remote: str, mode: str | None) -> None:
        """Copy the file LOCAL (- : stdin) to REMOTE on the device (SFTP)."""
        permissions = int(mode, 8) if mode is not None else None
        try:
            if local == "-":
                size = client.put(sys.stdin.buffer, remote, permissions)
            else:
                size = client.put(Path(local), remote, permissions)
        except OSError as exc:
            raise click.ClickException(f"{local}: {exc.strerror or exc}") from None
        except DriverError as exc:
            raise _fail(exc) from None
        click.echo(f"{local} -> {client.name}:{remote} ({size} bytes)", err=True)

    @group.command()
    @click.argument("remote")
    @click.argument("local", type=click.Path(dir_okay=False, allow_dash=True))
    def get(remote: str, local: str) -> None:
        """Copy REMOTE on the device to the file LOCAL (- : stdout) (SFTP)."""
        try:
            if local == "-":
                size = client.get(remote, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            else:
                size = client.get(remote, Path(local))
        except OSError as exc:
            raise click.ClickException(f"{local}: {exc.strerror or exc}") from None
        except DriverError as exc:
            raise _fail(exc) from None
        click.echo(f"{client.name}:{remote} -> {local} ({size} bytes)", err=True)

    @group.command()
    @click.argument("port", type=click.IntRange(1, 65535))
    @click.argument("local_port", type=click.IntRange(0, 65535), default=0, required=False)
    @click.option("--host", default="localhost", show_default=True, help="As the device sees it.")
    def forward(port: int, local_port: int, host: str) -> None:
        """Forward a local TCP port (LOCAL_PORT, 0: any free) to PORT on the device, like
        ssh -L; the first line printed names the local port. Ctrl-C stops."""
        try:
            fwd = client.forward_local(port, host, local_port).start()
        except OSError as exc:
            raise click.ClickException(f"cannot listen on port {local_port}: {exc}") from None
        click.echo(
            f"Forwarding 127.0.0.1:{fwd.port} -> {client.name}:{host}:{port} (Ctrl-C to stop)"
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            click.echo("Stopped.", err=True)
        finally:
            fwd.close()

    return group


def _parse_escape(text: str) -> bytes:
    if len(text) == 2 and text[0] == "^":
        return bytes([ord(text[1].upper()) & 0x1F])
    if len(text) == 1:
        return text.encode()
    raise click.BadParameter(f"expected ^X, one character or none (got {text!r})")
