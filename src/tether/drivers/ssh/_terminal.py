"""The client side of a shell stream: :class:`ShellChannel`, and :func:`run_shell` on a terminal.

Theory of operation (as the serial console's ``interactive``). A thread reads frames from the
stream and writes output to the terminal; the caller's thread waits with ``select`` on the
keyboard and a wake-up pipe, sends what is typed, and sends a RESIZE frame when SIGWINCH
says the window changed (the signal handler only writes to the pipe, so every send happens on
one thread). On a terminal, raw mode passes every key through, Ctrl-C included, so the
device's pty turns it into SIGINT for its foreground job, exactly as with ``ssh``. The escape
byte (Ctrl-] by default) leaves at once; otherwise the shell's exit status is returned.
Without a terminal (pipes), end of input is passed on and the output is read to the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import termios
import threading
import tty

from tether.driver import ByteStream
from tether.errors import TetherError

from ._frames import FrameDecoder, FrameKind, ShellFrame, encode

__all__ = ["ShellChannel", "run_shell", "terminal_size"]


def terminal_size(fd: int) -> tuple[int, int]:
    """``(columns, rows)`` of the terminal on ``fd`` (80x24 when it is not one)."""
    try:
        rows, cols, _, _ = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return 80, 24
    return (cols or 80), (rows or 24)


class ShellChannel:
    """Send keys and resizes to a shell stream; read its output frames.

    Attributes:
        status: the shell's exit status, once its EXIT frame arrived.
    """

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.status: int | None = None
        self._decoder = FrameDecoder()
        self._frames: list[ShellFrame] = []

    def send(self, data: bytes) -> None:
        """Send keys (or script text) to the shell."""
        for start in range(0, len(data), 1 << 16):
            self.stream.send(encode(ShellFrame(FrameKind.DATA, data=data[start : start + 65536])))

    def resize(self, cols: int, rows: int) -> None:
        """Tell the device's pty the terminal's new size."""
        self.stream.send(encode(ShellFrame(FrameKind.RESIZE, cols=cols, rows=rows)))

    def send_eof(self) -> None:
        """End of input (the shell sees end of file)."""
        self.stream.send_eof()

    def next_frame(self) -> ShellFrame | None:
        """The next DATA, STDERR or EXIT frame; ``None`` once the stream ended."""
        while not self._frames:
            chunk = self.stream.receive()
            if not chunk:
                return None
            self._frames.extend(self._decoder.feed(chunk))
        frame = self._frames.pop(0)
        if frame.kind is FrameKind.EXIT:
            self.status = frame.status
        return frame

    def read_all(self) -> tuple[bytes, bytes]:
        """Everything the shell writes until it exits: ``(stdout, stderr)``."""
        out, err = bytearray(), bytearray()
        while (frame := self.next_frame()) is not None:
            if frame.kind is FrameKind.DATA:
                out += frame.data
            elif frame.kind is FrameKind.STDERR:
                err += frame.data
        return bytes(out), bytes(err)


def run_shell(
    channel: ShellChannel,
    *,
    stdin_fd: int,
    stdout_fd: int,
    stderr_fd: int,
    escape: bytes | None = b"\x1d",
    banner: str | None = None,
) -> int | None:
    """Wire a shell to this process's terminal (or pipes) until it exits or the escape key.

    Returns:
        The shell's exit status; ``None`` when the user left with the escape key (or the
        stream ended without a status).
    """
    if escape is not None and len(escape) != 1:
        raise ValueError(f"the escape must be one byte (got {escape!r})")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    failure: list[BaseException] = []
    output_ended = threading.Event()

    def copy_out() -> None:
        try:
            while (frame := channel.next_frame()) is not None:
                if frame.kind is FrameKind.DATA:
                    _write_all(stdout_fd, frame.data)
                elif frame.kind is FrameKind.STDERR:
                    _write_all(stderr_fd, frame.data)
        except (TetherError, OSError, ValueError) as exc:
            failure.append(exc)
        finally:
            output_ended.set()
            with contextlib.suppress(OSError):
                os.write(wake_w, b"x")

    is_tty = os.isatty(stdin_fd)
    saved = termios.tcgetattr(stdin_fd) if is_tty else None
    resized = threading.Event()
    previous_handler: object = None
    on_main = threading.current_thread() is threading.main_thread()

    def on_winch(signum: int, frame: object) -> None:
        resized.set()
        with contextlib.suppress(OSError):
            os.write(wake_w, b"w")

    reader = threading.Thread(target=copy_out, name="tether-ssh-shell-out", daemon=True)
    input_open = True
    try:
        if saved is not None:
            tty.setraw(stdin_fd, termios.TCSANOW)
        if is_tty and on_main:
            previous_handler = signal.signal(signal.SIGWINCH, on_winch)
        if banner:
            _write_all(stderr_fd, banner.encode() + b"\r\n")
        reader.start()
        while True:
            watched = [wake_r, stdin_fd] if input_open else [wake_r]
            ready, _, _ = select.select(watched, [], [])
            if wake_r in ready:
                os.read(wake_r, 512)
                if output_ended.is_set():
                    break
                if resized.is_set():
                    resized.clear()
                    channel.resize(*terminal_size(stdin_fd))
            if stdin_fd in ready:
                data = os.read(stdin_fd, 1 << 16)
                if not data:
                    channel.send_eof()
                    input_open = False
                    continue
                if escape is not None and escape in data:
                    head = data.split(escape, 1)[0]
                    if head:
                        channel.send(head)
                    abort = getattr(channel.stream, "abort", None)
                    if abort is not None:
                        abort()
                    return None
                channel.send(data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSAFLUSH, saved)
        if previous_handler is not None:
            signal.signal(signal.SIGWINCH, previous_handler)  # type: ignore[arg-type]
        os.close(wake_r)
        if not reader.is_alive():
            os.close(wake_w)  # else leaked on purpose: the reader may still write to it
    reader.join()
    if failure:
        raise failure[0]
    return channel.status


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
