"""The one blocking byte copier: a byte stream to or from a socket, a terminal, a pipe.

``dut NODE connect``/``console`` (stdin and stdout), ``tether forward`` (a local TCP
connection) and the like attach a blocking byte stream (``ClientStream``) to something else
that blocks. Each direction is :func:`copy_bytes`; :func:`copy_both_ways` runs one of them on a
daemon thread and the other on the caller's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from tether.errors import TetherError

__all__ = ["COPY_ERRORS", "copy_both_ways", "copy_bytes"]

#: What ends a copy as a failure of one side (not a bug): I/O errors, a lost connection, a
#: closed file.
COPY_ERRORS: tuple[type[BaseException], ...] = (OSError, TetherError, ValueError)

Chunk = TypeVar("Chunk", bound=bytes | bytearray | memoryview)


def copy_bytes(
    read: Callable[[], Chunk],
    write: Callable[[Chunk], object],
    at_end: Callable[[], object] | None = None,
) -> BaseException | None:
    """Copy ``read()`` to ``write()`` until ``read()`` returns nothing, then call ``at_end``.

    Returns:
        ``None``, or the error (one of :data:`COPY_ERRORS`) that stopped the copy; ``at_end``
        is not called then.
    """
    try:
        while data := read():
            write(data)
        if at_end is not None:
            at_end()
    except COPY_ERRORS as exc:
        return exc
    return None


def copy_both_ways(
    here: Callable[[], BaseException | None],
    there: Callable[[], BaseException | None],
    *,
    name: str = "tether-copy",
    join: bool = True,
) -> tuple[BaseException | None, BaseException | None]:
    """Run ``there`` on a daemon thread and ``here`` on this one (each a :func:`copy_bytes`).

    Args:
        join: wait for ``there`` after ``here`` ended; ``False`` leaves it running (a read of
            stdin cannot be interrupted), and its outcome is reported as ``None``.

    Returns:
        ``(here's outcome, there's outcome)``.
    """
    outcome: list[BaseException | None] = [None]

    def run() -> None:
        outcome[0] = there()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    mine = here()
    if join:
        thread.join()
    return mine, outcome[0]
