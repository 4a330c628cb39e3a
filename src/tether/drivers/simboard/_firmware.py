"""What the simulated board runs: a boot log, a ``login:`` prompt and a tiny shell.

Theory of operation. :class:`BoardShell` is sans-IO: bytes typed on the console go in
(:meth:`BoardShell.feed`), bytes the board prints come out. It plays the board's tty line
discipline too (echo, backspace, Ctrl-C, ``\\r\\n`` line endings), since the board side of a
serial line is the one that echoes. :class:`Firmware` is the thin I/O loop around it on the
master side of a pty: it prints the boot log, then feeds whatever the pty delivers to the
shell. Writes never block: with nobody reading the console the output is dropped, as a UART
with no cable attached would drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shlex
import time
from collections.abc import Callable
from enum import Enum

__all__ = ["BOOT_LOG", "KERNEL_RELEASE", "BoardShell", "Firmware", "ShellState", "boot_banner"]

KERNEL_RELEASE = "6.1.0-tether-sim"
#: The lines the board prints between power-on and its login prompt.
BOOT_LOG = (
    "",
    "U-Boot 2024.01-tether (simulated board)",
    "DRAM:  256 MiB",
    "Loading kernel from /dev/vda ...",
    f"[    0.000000] Linux version {KERNEL_RELEASE} (tether@sim) #1 SMP PREEMPT",
    "[    0.000000] Command line: console=ttyS0,115200 root=/dev/vda",
    "[    0.412000] virtio_blk virtio0: [vda] disk attached",
    "[    0.530000] Run /sbin/init as init process",
    "Starting syslogd: OK",
    "Starting network: OK",
)
_HEAD_LIMIT = 1 << 20


class ShellState(Enum):
    """Where the board's console is: booting, at ``login:``, in the shell, or halted."""

    BOOTING = "booting"
    LOGIN = "login"
    SHELL = "shell"
    HALTED = "halted"


def boot_banner(disk: str | None) -> str:
    """What the boot log says about the disk: its first line when it holds one."""
    if disk is None:
        return "no disk attached: booting the built-in image"
    try:
        with open(disk, "rb") as file:
            head = file.read(256)
    except OSError as exc:
        return f"/dev/vda: cannot read ({exc.strerror})"
    line = head.split(b"\n", 1)[0]
    if not line.strip(b"\0") or not line.isascii() or not line.decode().isprintable():
        return "/dev/vda: no image header (blank disk): booting the built-in image"
    return f"/dev/vda: {line.decode()}"


class BoardShell:
    """The console of the simulated board, sans-IO: typed bytes in, printed bytes out.

    Args:
        hostname: shown in the prompts and by ``hostname``.
        disk: the file behind ``/dev/vda`` (``None``: no disk attached).
        clock: seconds, for ``uptime`` (monotonic).
    """

    def __init__(
        self,
        hostname: str = "simboard",
        disk: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hostname = hostname
        self.disk = disk
        self.state = ShellState.BOOTING
        self._clock = clock
        self._booted_at = clock()
        self._line = bytearray()
        self._last_cr = False

    @property
    def halted(self) -> bool:
        """True after ``poweroff``."""
        return self.state is ShellState.HALTED

    @property
    def prompt(self) -> str:
        return f"root@{self.hostname}:~# "

    def boot_lines(self) -> list[str]:
        """The boot log, the disk's banner included (printed by the I/O loop, paced)."""
        log = list(BOOT_LOG)
        log.insert(4, boot_banner(self.disk))
        return log

    def booted(self) -> bytes:
        """Boot is over: the login prompt."""
        self.state = ShellState.LOGIN
        self._booted_at = self._clock()
        return f"\r\nWelcome to the tether simulated board\r\n{self.hostname} login: ".encode()

    def feed(self, data: bytes) -> bytes:
        """Handle typed bytes; returns what the board prints in answer (echo included)."""
        if self.state in (ShellState.BOOTING, ShellState.HALTED):
            return b""  # nobody reads the UART yet (or any more)
        out = bytearray()
        for byte in data:
            char = bytes((byte,))
            if char == b"\n" and self._last_cr:
                self._last_cr = False
                continue  # \r\n is one line end
            self._last_cr = char == b"\r"
            if char in (b"\r", b"\n"):
                line, self._line = self._line.decode(errors="replace"), bytearray()
                out += b"\r\n" + self._enter(line).encode()
                if self.halted:
                    break
            elif char in (b"\x7f", b"\x08"):
                if self._line:
                    del self._line[-1]
                    out += b"\b \b"
            elif char == b"\x03":
                self._line.clear()
                out += b"^C\r\n" + self._prompt_now().encode()
            elif char == b"\x04" and not self._line and self.state is ShellState.SHELL:
                out += b"logout\r\n" + self._logout().encode()
            elif byte >= 0x20:
                self._line += char
                out += char
        return bytes(out)

    def _prompt_now(self) -> str:
        return self.prompt if self.state is ShellState.SHELL else f"{self.hostname} login: "

    def _logout(self) -> str:
        self.state = ShellState.LOGIN
        return f"\r\n{self.hostname} login: "

    def _enter(self, line: str) -> str:
        if self.state is ShellState.LOGIN:
            if not line.strip():
                return f"{self.hostname} login: "
            self.state = ShellState.SHELL
            return f"Last login: on ttyS0\r\n{self.prompt}"
        try:
            argv = shlex.split(line)
        except ValueError as exc:
            return f"-sh: syntax error: {exc}\r\n{self.prompt}"
        if not argv:
            return self.prompt
        if argv[0] in ("exit", "logout"):
            return self._logout()
        if argv[0] == "poweroff":
            self.state = ShellState.HALTED
            return "reboot: Power down\r\n"
        output = self._run(argv)
        text = "".join(f"{line}\r\n" for line in output.splitlines()) if output else ""
        return text + self.prompt

    def _run(self, argv: list[str]) -> str:
        name, args = argv[0], argv[1:]
        if name == "uname":
            return self._uname(args)
        if name == "cat" and args == ["/proc/version"]:
            return f"Linux version {KERNEL_RELEASE} (tether@sim) #1 SMP PREEMPT"
        if name == "hostname":
            return self.hostname
        if name == "echo":
            return " ".join(args)
        if name == "uptime":
            return f"up {self._clock() - self._booted_at:.0f} s, 1 user, load average: 0.00"
        if name == "head":
            return self._head(args)
        if name == "sha256sum":
            return self._sha256sum(args)
        if name in ("true", ":"):
            return ""
        if name == "help":
            return (
                "commands: uname [-a|-r|-n|-m], cat /proc/version, hostname, echo, uptime, "
                "head -n N|-c N /dev/vda, sha256sum /dev/vda, exit, poweroff"
            )
        return f"-sh: {name}: not found"

    def _uname(self, args: list[str]) -> str:
        parts = {
            "-s": "Linux",
            "-n": self.hostname,
            "-r": KERNEL_RELEASE,
            "-v": "#1 SMP PREEMPT tether simulated board",
            "-m": "x86_64",
        }
        if not args:
            return "Linux"
        if args == ["-a"]:
            return " ".join([*parts.values(), "GNU/Linux"])
        if all(arg in parts for arg in args):
            return " ".join(parts[arg] for arg in args)
        return f"uname: unrecognized option '{args[0]}'"

    def _open_disk(self, path: str, what: str) -> bytes | str:
        if path != "/dev/vda":
            return f"{what}: {path}: No such file or directory"
        if self.disk is None:
            return f"{what}: /dev/vda: No such device"
        try:
            with open(self.disk, "rb") as file:
                return file.read(_HEAD_LIMIT)
        except OSError as exc:
            return f"{what}: /dev/vda: {exc.strerror}"

    def _head(self, args: list[str]) -> str:
        if len(args) != 3 or args[0] not in ("-n", "-c") or not args[1].isdigit():
            return "usage: head -n LINES|-c BYTES /dev/vda"
        data = self._open_disk(args[2], "head")
        if isinstance(data, str):
            return data
        count = int(args[1])
        lines = data.splitlines(keepends=True)
        data = data[:count] if args[0] == "-c" else b"".join(lines[:count])
        return data.rstrip(b"\0").decode(errors="replace")

    def _sha256sum(self, args: list[str]) -> str:
        if len(args) != 1:
            return "usage: sha256sum /dev/vda"
        if args[0] != "/dev/vda" or self.disk is None:
            return f"sha256sum: {args[0]}: No such file or directory"
        digest = hashlib.sha256()
        with open(self.disk, "rb") as file:
            while chunk := file.read(1 << 20):
                digest.update(chunk)
        return f"{digest.hexdigest()}  /dev/vda"


class Firmware:
    """Runs a :class:`BoardShell` on the master side of a pty until stopped or powered off.

    Args:
        master: the pty master fd (non-blocking); the console is its slave side.
        shell: the board's console logic.
        boot_seconds: how long the boot log takes to print (spread over its lines).
    """

    def __init__(self, master: int, shell: BoardShell, boot_seconds: float) -> None:
        self.master = master
        self.shell = shell
        self.boot_seconds = boot_seconds
        self.halted = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._reading = False

    async def run(self) -> None:
        """Print the boot log, then answer the console until ``poweroff`` (or cancelled)."""
        try:
            lines = self.shell.boot_lines()
            pause = self.boot_seconds / len(lines)
            for line in lines:
                self.write(f"{line}\r\n".encode())
                if pause:
                    await asyncio.sleep(pause)  # a board takes its time to boot
            self._drain()  # what was typed during the boot is lost, as on a real board
            self.write(self.shell.booted())
            self._loop.add_reader(self.master, self._on_readable)
            self._reading = True
            await self.halted.wait()
        finally:
            if self._reading:
                self._loop.remove_reader(self.master)
                self._reading = False

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self.master, 4096):
                pass

    def _on_readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except BlockingIOError:
            return
        except OSError:  # the pty was closed under us: the driver is stopping
            self.halted.set()
            return
        self.write(self.shell.feed(data))
        if self.shell.halted:
            self.halted.set()

    def write(self, data: bytes) -> None:
        """Print on the console; dropped when nobody drains it (the pty buffer is full)."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self.master, data)
