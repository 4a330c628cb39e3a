"""Attach a byte stream to this process's stdin/stdout (``dut node connect``, ``console``).

Pipe mode copies stdin into the stream (then half-closes it at end of input) and the stream to
stdout until the driver ends its side. Console mode (a terminal on stdin) switches the terminal
to raw mode so every key goes to the device, and ends on the escape key (Ctrl-]).
"""

from __future__ import annotations

import contextlib
import os
import sys
import termios
import threading
import tty
from collections.abc import Iterator
from typing import BinaryIO

from tether.driver import ByteStream
from tether.errors import TetherError
from tether.wire import copy_bytes

__all__ = ["ESCAPE", "attach", "raw_terminal"]

#: Ctrl-]: ends a console session (as in telnet).
ESCAPE = b"\x1d"
_CHUNK = 1 << 16


def attach(stream: ByteStream, stdin: BinaryIO, stdout: BinaryIO, *, escape: bool = False) -> None:
    """Copy ``stdin`` to ``stream`` and ``stream`` to ``stdout`` until the stream ends.

    With ``escape``, reading :data:`ESCAPE` from stdin ends the session at once (the stream
    is aborted). Both directions run on daemon threads, so neither a silent device nor an idle
    terminal keeps the other side from finishing.

    Raises:
        TetherError: the stream failed (the driver raised, the connection was lost).
    """
    done = threading.Event()
    failure: list[BaseException] = []
    escaped = threading.Event()

    def write(data: bytes | bytearray | memoryview) -> None:
        stdout.write(data)
        stdout.flush()

    def pump_down() -> None:
        try:
            error = copy_bytes(stream.receive, write)
            if error is not None:
                failure.append(error)
        finally:
            done.set()

    def pump_up() -> None:
        try:
            while data := _read_some(stdin):
                if escape and ESCAPE in data:
                    before = data.split(ESCAPE, 1)[0]
                    if before:
                        stream.send(before)
                    escaped.set()
                    done.set()
                    return
                stream.send(data)
            stream.send_eof()
        except (TetherError, OSError, ValueError):
            done.set()

    for target, name in ((pump_down, "dut-stdout"), (pump_up, "dut-stdin")):
        threading.Thread(target=target, name=name, daemon=True).start()
    done.wait()
    if failure:
        raise failure[0]
    abort = getattr(stream, "abort", None)
    if escaped.is_set() and abort is not None:
        abort()


def _read_some(stdin: BinaryIO) -> bytes:
    try:
        fileno = stdin.fileno()
    except (OSError, ValueError, AttributeError):
        read1 = getattr(stdin, "read1", None)
        return bytes(read1(_CHUNK) if read1 is not None else stdin.read(_CHUNK))
    return os.read(fileno, _CHUNK)


@contextlib.contextmanager
def raw_terminal(stdin: BinaryIO) -> Iterator[bool]:
    """Raw mode on ``stdin`` while inside, when it is a terminal; yields whether it is."""
    try:
        fd = stdin.fileno()
        is_tty = os.isatty(fd)
    except (OSError, ValueError, AttributeError):
        is_tty = False
    if not is_tty:
        yield False
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        sys.stderr.write("\r\n")
