"""``LoopThread``: an asyncio loop (uvloop when installed) running on its own thread.

Sync code hands coroutines to it with :meth:`LoopThread.run`. Used by ``serve()`` and the
exporter's in-process modes; the server side of tether always runs on asyncio.
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "new_event_loop"]

T = TypeVar("T")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when it is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopThread:
    """Owns an event loop on a daemon thread; ``close()`` stops and joins it."""

    def __init__(self, name: str = "tether-loop") -> None:
        self.loop = new_event_loop()
        self.name = name
        self._finished = threading.Event()
        # Started with _thread, not threading.Thread: Thread.start() blocks until the new
        # thread has run, a round of wake-ups that costs a scheduler tick (milliseconds) on a
        # busy machine, and serve() starts one per test. Nothing waits for the loop to come
        # up either: work submitted before it runs is queued (call_soon_threadsafe).
        _thread.start_new_thread(self._main, ())

    def _main(self) -> None:
        try:
            threading.current_thread().name = self.name
            asyncio.set_event_loop(self.loop)
            self._run()
        finally:
            self._finished.set()

    def _run(self) -> None:
        self.loop.run_forever()
        # Cancel whatever is left so nothing is destroyed pending.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and block until it finishes; its exception propagates."""
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        """Stop the loop, cancel what is left on it, and wait for its thread to end."""
        if not self._finished.is_set():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._finished.wait()
