"""One QEMU process and its console, shared by the board's child drivers.

Theory of operation. The console is a unix socket on which *this* side listens; QEMU is
started with ``-chardev socket,path=...`` as the client, so it connects while it sets up its
devices, before the guest runs: not a byte of boot output is lost, and nothing has to poll
for a socket to appear. Its QMP monitor connects the same way; QEMU answers a QMP command
only once all devices are set up, so that answer is the signal that the board is on.

One reader task copies what the guest prints to every open console stream (a hub); bytes
from any stream go to the guest. Streams outlive power cycles, like a serial cable outlives
the board's power. TCP ports forwarded to the guest (``hostfwd``) are picked fresh on
127.0.0.1 at each power-on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import tempfile
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.drivers.serial import ConsoleFanout
from tether.errors import TetherError

__all__ = ["ConsoleHub", "QemuError", "VirtualMachine", "VmSpec"]

_READ = 1 << 16
_STDERR_LINES = 40
_PR_SET_PDEATHSIG = 1


class QemuError(TetherError, RuntimeError):
    """QEMU could not be started, or the board is not in a state for the request."""


@dataclass
class VmSpec:
    """What to start: everything the command line is built from."""

    qemu: str
    kernel: str
    initrd: str
    append: str
    memory_mib: int
    smp: int
    accel: str
    disk: str | None
    forwards: dict[str, int] = field(default_factory=dict)
    extra_args: Sequence[str] = ()
    #: NIC arguments replacing the user network (``nic: dut``), and descriptors they name.
    netdev: Sequence[str] = ()
    pass_fds: Sequence[int] = ()


class ConsoleHub(ConsoleFanout):
    """The guest's console shared by every open stream (a :class:`ConsoleFanout`); input
    goes to the guest."""

    def __init__(self) -> None:
        super().__init__("qemu console", self._to_guest)
        self.writer: asyncio.StreamWriter | None = None

    async def _to_guest(self, data: bytes) -> None:
        """Send bytes to the guest; dropped while the board is off (as on a real UART)."""
        writer = self.writer
        if writer is None or writer.is_closing():
            return
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()


class VirtualMachine:
    """Starts and stops one QEMU process; owns the console socket and forwarded ports."""

    def __init__(self, hub: ConsoleHub) -> None:
        self.hub = hub
        self.process: asyncio.subprocess.Process | None = None
        self.ports: dict[str, int] = {}
        self.stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self._dir: str | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self._qmp: asyncio.StreamWriter | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def command(self, spec: VmSpec, console: str, qmp: str) -> list[str]:
        """The QEMU command line for ``spec``; QEMU connects to our unix sockets ``console``
        (the guest's ttyS0) and ``qmp`` (its control monitor)."""
        args = [
            spec.qemu,
            "-accel",
            spec.accel,
            "-nodefaults",
            "-nographic",
            "-monitor",
            "none",
            "-no-reboot",
            "-m",
            str(spec.memory_mib),
            "-smp",
            str(spec.smp),
            "-kernel",
            spec.kernel,
            "-initrd",
            spec.initrd,
            "-append",
            spec.append,
            "-chardev",
            f"socket,id=console,path={console}",
            "-serial",
            "chardev:console",
            "-chardev",
            f"socket,id=qmp,path={qmp}",
            "-mon",
            "chardev=qmp,mode=control",
        ]
        if spec.disk is not None:
            args += ["-drive", f"file={spec.disk},format=raw,if=virtio,cache=writeback"]
        fwd = "".join(
            f",hostfwd=tcp:127.0.0.1:{self.ports[name]}-:{guest}"
            for name, guest in spec.forwards.items()
        )
        if spec.netdev:
            args += spec.netdev
        else:
            args += ["-netdev", f"user,id=net0{fwd}", "-device", "virtio-net-pci,netdev=net0"]
        return [*args, *spec.extra_args]

    async def start(self, spec: VmSpec, connect_within: float = 30.0) -> None:
        """Start QEMU and wait until it runs the guest, its console connected.

        Readiness is QEMU's own answer on QMP: commands are served only once every device is
        set up, so a forwarding rule or a disk that fails makes this raise, not a later call.

        Raises:
            QemuError: QEMU is missing, exited at once (its stderr is in the message), or was
                not up within ``connect_within`` seconds.
        """
        async with self._lock:
            if self.running:
                return
            if self.process is not None:  # the guest powered off or rebooted (-no-reboot)
                await self._cleanup()
                self.process = None
            if shutil.which(spec.qemu) is None:
                raise QemuError(f"{spec.qemu} not found; install qemu-system-x86 (make setup)")
            self._dir = tempfile.mkdtemp(prefix="tether-qemu-")
            console_path = os.path.join(self._dir, "console.sock")
            qmp_path = os.path.join(self._dir, "qmp.sock")
            console, console_server = await _accept_one(console_path)
            qmp, qmp_server = await _accept_one(qmp_path)
            try:
                self.ports = {name: _free_port() for name in spec.forwards}
                self.stderr.clear()
                self.process = await asyncio.create_subprocess_exec(
                    *self.command(spec, console_path, qmp_path),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                    pass_fds=tuple(spec.pass_fds),
                )
                self._spawn(self._collect_stderr(self.process))
                exited: asyncio.Future[Any] = asyncio.ensure_future(self.process.wait())
                ready: asyncio.Future[Any] = asyncio.ensure_future(_qmp_ready(console, qmp))
                waiters: set[asyncio.Future[Any]] = {ready, exited}
                done, _ = await asyncio.wait(
                    waiters, timeout=connect_within, return_when=asyncio.FIRST_COMPLETED
                )
                if ready not in done or ready.exception() is not None:
                    ready.cancel()
                    exited.cancel()
                    await _close_accepted(console, qmp)
                    await self._kill()
                    # Let the stderr collector take what QEMU said before it died.
                    await asyncio.gather(*self._tasks, return_exceptions=True)
                    why = "exited" if exited in done else f"was not up within {connect_within} s"
                    raise QemuError(f"QEMU {why}: {self.stderr_tail() or '(no output)'}")
                exited.cancel()
                reader, writer = console.result()
                self._qmp = qmp.result()[1]
            finally:
                console_server.close()
                qmp_server.close()
            self.hub.writer = writer
            self._spawn(self._pump_console(reader))

    async def stop(self, grace: float = 5.0) -> None:
        """Stop QEMU (SIGTERM, then SIGKILL after ``grace`` seconds). Idempotent."""
        async with self._lock:
            process = self.process
            if process is not None and process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(process.wait(), grace)
                except TimeoutError:
                    await self._kill()
            await self._cleanup()

    def kill_now(self) -> None:
        """Synchronous last resort (driver ``stop()``): SIGKILL and forget."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        for task in self._tasks:
            task.cancel()
        self._remove_dir()

    def stderr_tail(self) -> str:
        return " | ".join(line.strip() for line in self.stderr if line.strip())

    async def _kill(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def _cleanup(self) -> None:
        writers = [self.hub.writer, self._qmp]
        self.hub.writer = self._qmp = None
        for writer in writers:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError, ConnectionError):
                    await writer.wait_closed()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.ports = {}
        self._remove_dir()

    def _remove_dir(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _spawn(self, coro: asyncio.Future[None] | object) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _pump_console(self, reader: asyncio.StreamReader) -> None:
        while data := await reader.read(_READ):
            await self.hub.publish(data)

    async def _collect_stderr(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            self.stderr.append(line.decode(errors="replace"))


_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _accept_one(path: str) -> tuple[asyncio.Future[_Connection], asyncio.Server]:
    """Listen on unix socket ``path``; the future gets the first connection."""
    connected: asyncio.Future[_Connection] = asyncio.get_running_loop().create_future()

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if connected.done():
            writer.close()
        else:
            connected.set_result((reader, writer))

    server = await asyncio.start_unix_server(accept, path)
    return connected, server


async def _close_accepted(*connections: asyncio.Future[_Connection]) -> None:
    for connection in connections:
        if connection.done() and not connection.cancelled():
            writer = connection.result()[1]
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()
        else:
            connection.cancel()


async def _qmp_ready(
    console: asyncio.Future[_Connection], qmp: asyncio.Future[_Connection]
) -> None:
    """Wait for both connections, then for QEMU to answer ``query-status`` on QMP."""
    await console
    reader, writer = await qmp
    await _qmp_line(reader, "QMP")  # the greeting
    for command in ("qmp_capabilities", "query-status"):
        writer.write(json.dumps({"execute": command}).encode() + b"\n")
        await writer.drain()
        await _qmp_line(reader, "return")


async def _qmp_line(reader: asyncio.StreamReader, key: str) -> dict[str, Any]:
    """The next QMP message with ``key`` (events in between are skipped)."""
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionResetError("QEMU closed its monitor")
        message = json.loads(line)
        if isinstance(message, dict) and key in message:
            return message
        if isinstance(message, dict) and "error" in message:
            raise QemuError(f"QEMU monitor: {message['error']}")


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the exporter dies, so no VM is orphaned."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
