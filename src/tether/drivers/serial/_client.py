from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from tether.driver import DriverClient
from tether.errors import DriverError

from ._console import Console, Pattern
from ._errors import ConsoleClosed, ExpectTimeout
from ._interface import SerialInterface, SerialSettings
from ._terminal import escape_name, interactive

__all__ = ["SerialClient"]


class SerialClient(DriverClient):
    """Client of :class:`SerialInterface`.

    ``open()`` gives a :class:`Console` of its own. The shortcuts ``expect``, ``send``,
    ``sendline`` and ``read_until`` share one console opened on first use (and logged to
    ``log_file`` when set before that); ``close()`` closes it.

    Attributes:
        log_file: where the shared console appends everything it receives.
    """

    interface = SerialInterface

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.log_file: str | Path | None = None
        self._console: Console | None = None

    def settings(self) -> SerialSettings:
        """The port's line settings."""
        result: SerialSettings = self.call("settings")
        return result

    def open(
        self,
        *,
        log_file: str | Path | None = None,
        encoding: str = "utf-8",
        linesep: str = "\n",
        read_only: bool = False,
    ) -> Console:
        """Open the port: a :class:`Console` (close it, or use it as a context manager).

        Several consoles may be open at once; only one may write: open the others with
        ``read_only=True`` (a second writer gets a ``ConsoleBusy`` error).
        """
        stream = self.stream("connect", read_only) if read_only else self.stream("connect")
        return Console(stream, log_file=log_file, encoding=encoding, linesep=linesep)

    def log(self, since: int = 0, limit: int | None = None) -> bytes:
        """What the console printed this session (kept on the exporter, bounded and
        rotated), from byte offset ``since``; see :meth:`log_size`."""
        data: bytes = self.call("log", since, limit)
        return data

    def log_size(self) -> int:
        """Bytes the console printed this session: pass it to :meth:`log` later to get what
        came after."""
        return int(self.call("log_size"))

    @property
    def shared_console(self) -> Console:
        """The console the shortcuts use (opened on first use, again after it ended)."""
        if self._console is None or self._console.closed:
            if self._console is not None:
                self._console.close()
            self._console = self.open(log_file=self.log_file)
        return self._console

    def expect(self, pattern: Pattern, timeout: float = 30.0) -> re.Match[bytes]:
        """See :meth:`Console.expect`."""
        return self.shared_console.expect(pattern, timeout)

    def read_until(self, delimiter: str | bytes = b"\n", timeout: float = 30.0) -> bytes:
        """See :meth:`Console.read_until`."""
        return self.shared_console.read_until(delimiter, timeout)

    def send(self, data: str | bytes) -> None:
        """Send bytes (``str`` is encoded as UTF-8)."""
        self.shared_console.send(data)

    def sendline(self, line: str | bytes = "") -> None:
        """Send ``line`` and a newline."""
        self.shared_console.sendline(line)

    def close(self) -> None:
        """Close the shared console, if open."""
        if self._console is not None:
            self._console.close()
            self._console = None

    def console(
        self,
        escape: bytes = b"\x1d",
        *,
        stdin_fd: int | None = None,
        stdout_fd: int | None = None,
        read_only: bool = False,
    ) -> str:
        """Interactive console on the local terminal (raw mode); ``escape`` (Ctrl-]) leaves.

        Args:
            escape: the byte that ends the console.
            stdin_fd, stdout_fd: the terminal (default: this process's stdin and stdout).

        Returns:
            Why it ended: ``"escape"``, or what ended the stream (e.g. the device went away).
        """
        stdin = sys.stdin.fileno() if stdin_fd is None else stdin_fd
        stdout = sys.stdout.fileno() if stdout_fd is None else stdout_fd
        mode = " (read-only)" if read_only else ""
        banner = f"Connected to {self.name}{mode}; {escape_name(escape)} leaves."
        args = (True,) if read_only else ()
        with self.stream("connect", *args) as stream:
            return interactive(
                stream,
                stdin_fd=stdin,
                stdout_fd=stdout,
                escape=escape,
                banner=banner,
                read_only=read_only,
            )

    def cli(self) -> click.Group:
        """``dut <node> console`` (interactive) and ``dut <node> expect`` (scripts)."""
        return _serial_cli(self)


def _serial_cli(client: SerialClient) -> click.Group:
    group = click.Group(name=client.name)

    @group.command()
    @click.option(
        "--escape",
        default="^]",
        show_default=True,
        help="The key that leaves: ^X for Ctrl-X, or one character.",
    )
    @click.option("--read-only", is_flag=True, help="Watch only (beside another writer).")
    def console(escape: str, read_only: bool) -> None:
        """Interactive serial console (raw terminal); the escape key leaves."""
        try:
            reason = client.console(_parse_escape(escape), read_only=read_only)
        except DriverError as exc:  # e.g. ConsoleBusy: another client writes
            raise click.ClickException(exc.message) from exc
        if reason != "escape":
            click.echo(f"\r\nconsole ended: {reason}", err=True)

    @group.command()
    @click.argument("pattern")
    @click.option("--timeout", type=float, default=30.0, show_default=True)
    @click.option("--regex", is_flag=True, help="PATTERN is a regular expression.")
    @click.option("--send", "to_send", help="Text sent once the port is open (\\n, \\r work).")
    @click.option("--log", "log_file", type=click.Path(dir_okay=False), help="Append output here.")
    def expect(
        pattern: str, timeout: float, regex: bool, to_send: str | None, log_file: str | None
    ) -> None:
        """Wait for PATTERN on the console; print what came before it and the match."""
        try:
            with client.open(log_file=log_file) as con:
                if to_send is not None:
                    con.send(to_send.encode().decode("unicode_escape"))
                match = con.expect(re.compile(pattern) if regex else pattern, timeout)
        except (ExpectTimeout, ConsoleClosed) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(match.string[: match.end()].decode(errors="replace"), nl=False)

    @group.command()
    @click.option("--since", type=int, default=0, show_default=True, help="Byte offset.")
    def log(since: int) -> None:
        """Print what the console printed this session (kept on the exporter)."""
        sys.stdout.buffer.write(client.log(since))
        sys.stdout.buffer.flush()

    return group


def _parse_escape(text: str) -> bytes:
    if len(text) == 2 and text[0] == "^":
        return bytes([ord(text[1].upper()) & 0x1F])
    if len(text) == 1:
        return text.encode()
    raise click.BadParameter(f"expected ^X or one character (got {text!r})", param_hint="--escape")
