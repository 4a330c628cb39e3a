"""``LoopThread``: an asyncio loop (uvloop when installed) running on its own thread.

Sync code hands coroutines to it with :meth:`LoopThread.run`. Used by ``serve()`` and the
exporter's in-process modes; the server side of tether always runs on asyncio. With ``spin``
the loop is asyncio's own, on a :class:`~tether.wire._spinning.SpinningSelector`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tether.errors import LifecycleError

from ._spinning import NATIVE, SpinningSelector

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
    """Owns an event loop on a daemon thread; ``close()`` stops and joins it.

    Args:
        name: the thread's name.
        start: start the thread now; with ``False``, :meth:`submit` work first and call
            :meth:`start` after: the loop finds that work ready when it starts, which spares
            a wake-up of the new thread.
        spin: seconds the loop polls for an answer after it sends, before it blocks (0: it
            blocks at once). Only for a peer in this process, and only with the C helper
            (``tether.wire._spinning``); ``selector`` is then the loop's selector.
    """

    def __init__(self, name: str = "tether-loop", *, start: bool = True, spin: float = 0.0) -> None:
        self.selector: SpinningSelector | None = None
        if spin > 0 and NATIVE:
            self.selector = SpinningSelector(spin)
            self.loop: asyncio.AbstractEventLoop = asyncio.SelectorEventLoop(self.selector)
        else:
            self.loop = new_event_loop()
        self.name = name
        self._finished = threading.Event()
        self._launched = False
        # A real (daemon) Thread, not _thread.start_new_thread: a raw thread that names itself
        # through threading.current_thread() gets a _DummyThread that stays in
        # threading.enumerate() forever.
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        if start:
            self.start()

    def start(self) -> None:
        """Start the loop's thread (only for ``LoopThread(start=False)``).

        Raises:
            LifecycleError: it was started already.
        """
        if self._launched:
            raise LifecycleError(f"LoopThread.start: {self.name} was started already")
        self._thread.start()
        self._launched = True

    def _main(self) -> None:
        try:
            asyncio.set_event_loop(self.loop)
            self._run()
        finally:
            self._finished.set()

    def _run(self) -> None:
        self.loop.run_forever()
        self._finish_loop()

    def _finish_loop(self) -> None:
        """On the loop's thread, once it stopped: cancel what is left, so nothing is destroyed
        pending, and close the loop."""
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

    def close(self, last: Coroutine[Any, Any, object] | None = None) -> None:
        """Stop the loop, cancel what is left on it, and wait for its thread to end.

        Args:
            last: a coroutine to run as the loop's final work (a teardown); the loop stops
                as soon as it ends, which spares a round of thread wake-ups over ``run()``
                then ``close()``. Its exception propagates.
        """
        failure: list[BaseException] = []
        if not self._launched and not self._finished.is_set():
            # Never started: nothing runs on the loop; drop what was submitted to it.
            if last is not None:
                last.close()
            self.loop.close()
            self._finished.set()
            return
        if self._finished.is_set():
            if last is not None:
                last.close()
                raise LifecycleError(f"LoopThread.close: {self.name} is already closed")
        elif last is None:
            self.loop.call_soon_threadsafe(self.loop.stop)
        else:
            failure = self._submit_last(last, self.loop.stop)
        if self._launched and self._thread is not threading.current_thread():
            self._thread.join()
        if failure:
            raise failure[0]

    def _submit_last(
        self, last: Coroutine[Any, Any, object] | None, then: Callable[[], object]
    ) -> list[BaseException]:
        """Submit ``last`` as the loop's final work, ``then`` called on the loop once it ended
        (however it ended); returns the list its exception, if any, is put in."""
        failure: list[BaseException] = []

        async def run_last() -> None:
            try:
                if last is not None:
                    await last
            except BaseException as exc:
                failure.append(exc)
            finally:
                then()

        self.submit(run_last())
        return failure
