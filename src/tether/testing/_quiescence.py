"""When nothing can ever run again: the test behind run calls' ``DeadlockError``.

A run call without a timeout that finds the foreground idle, everything settled and no timer
anywhere would wait for something from outside. This module decides whether anything *can*
still come (a watched file descriptor, a thread the kit does not know, a busy kit thread) and
describes what the call was waiting for, for the error message.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._serve import SERVE_LOOPS

if TYPE_CHECKING:
    from ._dispatcher import BackgroundDispatcher
    from ._loop import ForegroundLoop

__all__ = ["describe_awaited", "nothing_can_run"]


def nothing_can_run(
    loop: ForegroundLoop,
    background: Iterable[BackgroundDispatcher],
    threads_before: frozenset[threading.Thread],
) -> bool:
    """Whether no loop, kit thread, file descriptor or foreign thread can ever post again.

    Called when the foreground is idle, everything is settled and no timer is left.

    Args:
        loop: the foreground loop.
        background: the runtime's background dispatchers.
        threads_before: threads alive when the runtime was made (they cannot be waiting to
            post to it).
    """
    dispatchers = list(background)
    # Threads first: a foreign thread found dead has finished its posts, which the loop checks
    # below then see.
    kit = {d.thread for d in dispatchers}
    for thread in threading.enumerate():
        if thread in threads_before or thread in kit:
            continue
        if thread.name.startswith("tether-executor"):
            continue  # an idle worker of a kit loop's executor (busy ones count as busy)
        if SERVE_LOOPS.is_parked(thread):
            continue  # serve()'s idle loop thread, blocked until the next serve() takes it
        return False
    loops = [loop, *(d.loop for d in dispatchers if not d.shut_down)]
    activity = loop.activity
    with activity.lock:
        if not activity.settled() or loop._ready:
            return False
        return all(each.watches_nothing() for each in loops)


def describe_awaited(awaitable: Any, future: asyncio.Future[Any]) -> str:
    """``run_to_completion(<what>)``, with where a task is suspended when it is one."""
    what = getattr(awaitable, "__qualname__", None) or repr(awaitable)
    where = ""
    if isinstance(future, asyncio.Task):
        coro: Any = future.get_coro()
        what = getattr(coro, "__qualname__", what)
        frame = None
        while coro is not None:  # down the await chain to the innermost suspended frame
            inner = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if inner is None:
                break
            frame = inner
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if frame is not None:
            code = frame.f_code
            where = f", suspended in {code.co_name}() at {code.co_filename}:{frame.f_lineno}"
    return f"run_to_completion({what}{where})"
