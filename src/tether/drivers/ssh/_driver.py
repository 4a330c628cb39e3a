"""``Ssh``: a device reached over SSH, with asyncssh on the exporter's event loop.

Theory of operation. Each session's driver keeps one SSH connection (:class:`SshLink`),
opened on first use, so a device that is off when the lease starts costs nothing until it is
used, and closed when the session stops. A call that finds the connection dropped opens a
new one. Each command is a session channel on that connection; each ``put``/``get`` opens a
file on one SFTP client kept with the connection; each ``forward`` is a direct-tcpip
channel; each ``shell`` a session channel with a pty.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import asyncssh
from pydantic import AfterValidator, BeforeValidator, SecretStr

from tether.driver import Driver, export, export_stream
from tether.drivers.console import CommandResult
from tether.errors import ConfigError, LifecycleError

from ._channels import _END, Download, Forward, Session, ShellStream, Upload, pid_prefix
from ._connection import Credentials, SshLink, Target, ssh_errors
from ._errors import SshCommandTimeout, SshError
from ._fast_channel import sftp_channel, speed_up
from ._fast_sftp import SftpWrites
from ._hostkey import HostKeyPin, parse_host_key
from ._interface import SshInterface, SshOutput

__all__ = ["Ssh"]

T = TypeVar("T")
_TAIL = 400
_KILL_TIMEOUT = 10.0


def _check_host_key(value: str) -> str:
    parse_host_key(value)
    return value.strip()


def _password_text(value: Any) -> Any:
    # A YAML password such as 1234 is an int: take it as text, so validation never fails
    # (and never echoes the value in a config error).
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


class _Mapped:
    """A driver-side byte stream whose failures become :class:`SshError` (naming the device)."""

    def __init__(self, stream: Any, target: Target, doing: str) -> None:
        self._stream = stream
        self._target = target
        self._doing = doing
        self.accepts_buffers: bool = getattr(stream, "accepts_buffers", False)

    async def send(self, data: bytes) -> None:
        with ssh_errors(self._target, self._doing):
            await self._stream.send(data)

    async def receive(self) -> bytes:
        with ssh_errors(self._target, self._doing):
            data: bytes = await self._stream.receive()
            return data

    async def send_eof(self) -> None:
        with ssh_errors(self._target, self._doing):
            await self._stream.send_eof()


class Ssh(SshInterface, Driver):
    """A device reached over SSH (OpenSSH, dropbear, ...): commands, SFTP, forwards, a shell.

    Config:
        host: the device's address, as the exporter reaches it.
        port: its SSH port.
        user: who logs in.
        key_file: a private key file on the exporter host (OpenSSH or PEM format, no
            passphrase).
        password: a password (``key_file`` or ``password`` is required; with both the key is
            tried first). Never sent to clients, never logged.
        host_key: the device's public host key (``ssh-ed25519 AAAA...``, as in its
            ``/etc/ssh/ssh_host_ed25519_key.pub``) or its fingerprint (``SHA256:...``, as
            ``ssh-keygen -lf`` prints it). Any other key is refused.
        connect_timeout: seconds for TCP, the SSH handshake and the login together.
        keepalive: seconds between keepalive probes; three unanswered ones end the connection
            (the next call opens a new one).
        fast_path: send SFTP and forward data through tether's AES-GCM send path
            (``_fast_channel``) where the connection allows it; ``false`` leaves every packet
            to asyncssh.
    """

    host: str
    port: int = 22
    user: str = "root"
    key_file: str | None = None
    password: Annotated[SecretStr | None, BeforeValidator(_password_text)] = None
    host_key: Annotated[str, AfterValidator(_check_host_key)]
    connect_timeout: float = 10.0
    keepalive: float = 15.0
    fast_path: bool = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.key_file is None and self.password is None:
            raise ConfigError(f"{type(self).__qualname__}: give key_file or password")
        if self.connect_timeout <= 0:
            raise ConfigError(f"{type(self).__qualname__}.connect_timeout: must be positive")
        self._pin: HostKeyPin = parse_host_key(self.host_key)
        self._link: SshLink | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._sftp_conn: asyncssh.SSHClientConnection | None = None
        self._sftp_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()

    # -- the connection ---------------------------------------------------------------------

    @property
    def target(self) -> Target:
        """The device as messages name it."""
        try:
            name = self.node.path or self.node.name
        except LifecycleError:  # not started: no node yet
            name = ""
        return Target(name or "ssh", self.user, self.host, self.port)

    @property
    def link(self) -> SshLink:
        """The session's connection holder (made on first use)."""
        if self._link is None:
            password = self.password.get_secret_value() if self.password is not None else None
            self._link = SshLink(
                self.target,
                Credentials(self.key_file, password),
                self._pin,
                connect_timeout=self.connect_timeout,
                keepalive=self.keepalive,
            )
        return self._link

    async def _on_connection(
        self, doing: str, fn: Callable[[asyncssh.SSHClientConnection], Awaitable[T]]
    ) -> T:
        """``fn(connection)``, on a fresh connection once more if the first one was dead."""
        link = self.link
        for attempt in (1, 2):
            opened = link.opened
            conn = await link.connection()
            try:
                with ssh_errors(link.target, doing):
                    return await fn(conn)
            except SshError:
                reconnected = link.opened != opened
                if attempt == 2 or link.connected or reconnected:
                    raise
                self.logger.info("%s: the connection had dropped; reconnecting", link.target)
        raise AssertionError("unreachable")

    async def _session(
        self, doing: str, command: str | None, *, report_pid: bool = False, **kwargs: Any
    ) -> Session:
        async def open_session(conn: asyncssh.SSHClientConnection) -> Session:
            line = pid_prefix(command) if report_pid and command is not None else command
            _, session = await conn.create_session(
                lambda: Session(report_pid), line, encoding=None, **kwargs
            )
            assert isinstance(session, Session)
            return session

        return await self._on_connection(doing, open_session)

    async def _sftp_client(self) -> asyncssh.SFTPClient:
        """The SFTP client on the current connection (started again after a reconnect)."""
        async with self._sftp_lock:
            link = self.link
            if self._sftp is not None and link.connected and self._sftp_conn is link.current:
                return self._sftp

            async def start(conn: asyncssh.SSHClientConnection) -> asyncssh.SFTPClient:
                sftp = await conn.start_sftp_client()
                channel = sftp_channel(sftp)
                if channel is not None and self.fast_path:
                    speed_up(channel)
                self._sftp_conn = conn
                return sftp

            self._sftp = await self._on_connection("starting SFTP", start)
            return self._sftp

    async def prepare_stop(self) -> None:
        if self._background:  # kills of timed-out commands still on their way
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._sftp is not None:
            self._sftp.exit()
            self._sftp = None
        if self._link is not None:
            await self._link.aclose()

    # -- commands ---------------------------------------------------------------------------

    async def _command(
        self,
        command: str,
        timeout: float,  # noqa: ASYNC109 - the command's, on the device
    ) -> AsyncGenerator[tuple[str, bytes] | int, None]:
        """Run ``command``: its output chunks, then its exit status (an int)."""
        if timeout <= 0:
            raise ValueError(f"timeout must be positive (got {timeout})")
        target = self.link.target
        self.logger.info("%s: run %s", target, command)
        session = await self._session(f"running {command!r}", command, report_pid=True)
        # The timeout is the command's: connecting has its own (connect_timeout).
        deadline = asyncio.get_running_loop().time() + timeout
        tail = b""
        finished = False
        try:
            if session.channel is not None:
                session.channel.write_eof()
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        item = await session.next()
                except TimeoutError:
                    await self._kill(session)
                    finished = True  # killed already
                    shown = tail[-_TAIL:].decode(errors="replace")
                    raise SshCommandTimeout(
                        f"{target}: {command!r} did not finish within {timeout:g} s and was "
                        f"killed; last output: {shown!r}"
                    ) from None
                if item == _END:
                    break
                tail = (tail + item[1])[-_TAIL:]
                yield item
            if session.error is not None:
                with ssh_errors(target, f"running {command!r}"):
                    raise session.error
            finished = True
            yield session.exit_status
        finally:
            if finished:
                session.close()
            else:  # failed, or the caller stopped reading: end it on the device, in the back
                task = asyncio.get_running_loop().create_task(self._kill(session))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def _kill(self, session: Session) -> None:
        """Kill a command that has not finished: by SSH signal (which OpenSSH refuses for
        root), and by its process group from another channel (see ``pid_prefix``)."""
        session.kill()
        if session.pid is None or not self.link.connected:
            return
        group = f"kill -KILL -- -{session.pid} 2>/dev/null || kill -KILL {session.pid}"
        try:
            async with asyncio.timeout(_KILL_TIMEOUT):
                killer = await self._session("killing a command", group)
                while await killer.next() != _END:
                    pass
        except (SshError, TimeoutError) as exc:
            self.logger.warning("%s: could not kill a command: %s", self.link.target, exc)

    @export
    async def run(self, command: str, timeout: float = 30.0) -> CommandResult:  # noqa: ASYNC109
        """Run ``command`` with the user's shell on the device.

        Returns:
            ``output``: stdout and stderr as they came (decoded as UTF-8), ``status``: the
            exit status (128 + N when signal N killed it).

        Raises:
            SshCommandTimeout: not done within ``timeout`` seconds (it is killed).
            SshUnreachable, SshAuthFailed, SshHostKeyRefused, SshDisconnected: as named.
        """
        output = bytearray()
        status = -1
        async with contextlib.aclosing(self._command(command, timeout)) as items:
            async for item in items:
                if isinstance(item, int):
                    status = item
                else:
                    output += item[1]
        return CommandResult(output=output.decode(errors="replace"), status=status)

    @export
    async def run_stream(
        self,
        command: str,
        timeout: float = 30.0,  # noqa: ASYNC109
    ) -> AsyncIterator[SshOutput]:
        """Run ``command``; stream stdout and stderr as they come, then the exit status.

        Stopping early (the client stops reading) closes the channel.
        """
        async with contextlib.aclosing(self._command(command, timeout)) as items:
            async for item in items:
                if isinstance(item, int):
                    yield SshOutput(kind="exit", status=item)
                else:
                    kind = "stderr" if item[0] == "stderr" else "stdout"
                    yield SshOutput(kind=kind, data=item[1])

    # -- files ------------------------------------------------------------------------------

    @export_stream
    @asynccontextmanager
    async def put(self, remote_path: str, mode: int | None = None) -> AsyncIterator[_Mapped]:
        """Write the bytes that come in to ``remote_path`` (created or truncated), by SFTP.

        After the client's end of input, every write is confirmed, the file is closed (and
        its ``mode`` set, when given), and one JSON line ``{"path", "bytes"}`` comes back.
        """
        target = self.link.target
        doing = f"put {remote_path}"
        sftp = await self._sftp_client()
        attrs = asyncssh.SFTPAttrs(permissions=mode) if mode is not None else asyncssh.SFTPAttrs()
        with ssh_errors(target, doing):
            file = await sftp.open(remote_path, "wb", attrs)
        upload = Upload(file, remote_path, SftpWrites.open(sftp, file))
        try:
            yield _Mapped(upload, target, doing)
        finally:
            await upload.aclose()
        if mode is not None:
            with ssh_errors(target, doing):
                await sftp.chmod(remote_path, mode)
        self.logger.info("%s: put %s (%d bytes)", target, remote_path, upload.written)

    @export_stream
    @asynccontextmanager
    async def get(self, remote_path: str) -> AsyncIterator[_Mapped]:
        """Send the device's file ``remote_path``, by SFTP."""
        target = self.link.target
        doing = f"get {remote_path}"
        sftp = await self._sftp_client()
        with ssh_errors(target, doing):
            file = await sftp.open(remote_path, "rb")
        download = Download(file)
        try:
            yield _Mapped(download, target, doing)
        finally:
            await download.aclose()
        self.logger.info("%s: get %s (%d bytes)", target, remote_path, download.sent)

    # -- forwards and the shell -------------------------------------------------------------

    @export_stream
    @asynccontextmanager
    async def forward(self, port: int, host: str = "localhost") -> AsyncIterator[_Mapped]:
        """A byte stream to ``host:port`` as the device sees it (``localhost``: the device
        itself), through an SSH direct-tcpip channel."""
        doing = f"forward to {host}:{port}"

        async def open_forward(conn: asyncssh.SSHClientConnection) -> Forward:
            reader, writer = await conn.open_connection(host, port, encoding=None)
            if self.fast_path:
                speed_up(writer.channel)
            return Forward(reader, writer)

        stream = await self._on_connection(doing, open_forward)
        try:
            yield _Mapped(stream, self.link.target, doing)
        finally:
            await stream.aclose()

    @export_stream
    @asynccontextmanager
    async def shell(
        self, term: str = "xterm-256color", cols: int = 80, rows: int = 24, pty: bool = True
    ) -> AsyncIterator[_Mapped]:
        """The user's login shell on the device, as a framed stream (``tether.drivers.ssh``
        describes the frames): keys in, output out, ``RESIZE`` frames change the pty's size,
        the last frame is the shell's exit status. ``pty=False``: no terminal (scripts)."""
        options: dict[str, Any] = (
            {"term_type": term, "term_size": (cols, rows), "request_pty": "force"}
            if pty
            else {"request_pty": False}
        )
        session = await self._session("opening a shell", None, **options)
        how = f"pty {cols}x{rows}" if pty else "no pty"
        self.logger.info("%s: shell opened (%s)", self.link.target, how)
        stream = ShellStream(session)
        try:
            yield _Mapped(stream, self.link.target, "shell")
        finally:
            await stream.aclose()

    @export
    async def address(self) -> str:
        """``user@host:port``."""
        return f"{self.user}@{self.host}:{self.port}"
