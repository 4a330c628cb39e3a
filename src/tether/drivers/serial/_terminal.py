"""The interactive serial console: the local terminal in raw mode, wired to the stream.

Keys typed go to the device byte for byte (Ctrl-C included); what the device sends is
written to the terminal as is. The escape byte (Ctrl-] by default) leaves. A thread copies
the stream to the terminal; the caller's thread waits on the keyboard and a wake-up pipe
with ``select``, so the console also ends at once when the device goes away.
"""

from __future__ import annotations

import contextlib
import os
import select
import termios
import threading
import tty

from tether.driver import ByteStream
from tether.errors import TetherError

__all__ = ["escape_name", "interactive"]

_JOIN_TIMEOUT = 5.0


def escape_name(escape: bytes) -> str:
    """How to type ``escape``, e.g. ``Ctrl-]`` for ``b"\\x1d"``."""
    if len(escape) == 1 and escape[0] < 0x20:
        return "Ctrl-" + chr(escape[0] + 0x40)
    return repr(escape)


def interactive(
    stream: ByteStream,
    *,
    stdin_fd: int,
    stdout_fd: int,
    escape: bytes = b"\x1d",
    banner: str | None = None,
    read_only: bool = False,
) -> str:
    """Run an interactive console until the escape key or the end of the stream.

    Args:
        stream: the serial byte stream.
        stdin_fd: the keyboard (a tty: it is put in raw mode and restored afterwards).
        stdout_fd: where the device's output goes.
        escape: the byte that leaves the console.
        banner: printed first (a line).
        read_only: watch only: keys other than the escape are not sent.

    Returns:
        ``"escape"`` when the user left, else why the stream ended.

    Raises:
        ValueError: ``escape`` is not exactly one byte.
    """
    if len(escape) != 1:
        raise ValueError(f"the escape must be one byte (got {escape!r})")
    wake_r, wake_w = os.pipe()
    ended: list[str] = []

    def copy_out() -> None:
        try:
            while data := stream.receive():
                _write_all(stdout_fd, data)
            ended.append("the device closed the console")
        except (TetherError, OSError) as exc:
            ended.append(str(exc))
        finally:
            with contextlib.suppress(OSError):
                os.write(wake_w, b"x")

    saved = termios.tcgetattr(stdin_fd) if os.isatty(stdin_fd) else None
    reader = threading.Thread(target=copy_out, name="tether-console-out", daemon=True)
    try:
        if saved is not None:
            tty.setraw(stdin_fd, termios.TCSANOW)
        if banner:
            _write_all(stdout_fd, banner.encode() + b"\r\n")
        reader.start()
        while True:
            ready, _, _ = select.select([stdin_fd, wake_r], [], [])
            if wake_r in ready:
                break
            data = os.read(stdin_fd, 1024)
            if not data:
                return "end of input"
            head, found, _ = data.partition(escape)
            if head and not read_only:
                stream.send(head)
            if found:
                return "escape"
    finally:
        if saved is not None:
            termios.tcsetattr(stdin_fd, termios.TCSAFLUSH, saved)
        if reader.ident is not None:
            # End our side so the driver ends its side and the reader thread returns; the
            # stream is then drained and can be closed by its owner without a second reader.
            with contextlib.suppress(TetherError, OSError):
                stream.send_eof()
            reader.join(_JOIN_TIMEOUT)
        os.close(wake_r)
        if not reader.is_alive():
            os.close(wake_w)  # else leaked on purpose: the stuck reader may still write to it
    return ended[0] if ended else "the console ended"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
