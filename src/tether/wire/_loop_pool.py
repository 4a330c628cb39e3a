"""``LoopPool``: an idle loop thread kept for the next ``serve()``, only when provably clean.

Starting a thread and joining it was most of what ``tether.testing.serve()`` cost (the new
thread's start-up, ``Thread.start`` waiting for it, the join: ~10 thread sleeps). So
``serve()`` takes its :class:`~tether.wire.LoopThread` from a pool. At ``close()`` the loop
runs the teardown, lets what the teardown set going settle (a few turns at most), and stops;
then, on its own thread, it is checked (:func:`loop_leftovers`). Only when nothing is left
does the thread park, blocked on a lock with its loop not running, until the next ``start()``.
Anything left and the loop is finished and closed as a plain ``LoopThread`` is, never reused.

"Nothing left" means: no task, no ready callback, no timer that is not cancelled (a cancelled
one is inert: asyncio drops it when it comes due), no registered reader or writer besides the
loop's own wake-up socket, no open transport, no job queued or running in the default executor
(the pool's own, which counts them; its idle workers are kept), no async generator to
finalize, no write held by the spinning selector, and the debug flag, exception handler, task
factory and slow-callback threshold as the new loop had them.
When the loop is taken again, its ready queue is checked once more (a stale reference may
have posted to it with ``call_soon_threadsafe``, the one thread-safe way in). The spinning
selector's adaptive skip count is kept on purpose: it is a timing hint, not session state
(reset, it costs a 0.2 ms spin after every server Hello that never pays). Not checked: what
a driver keeps in the loop thread's ``threading.local`` objects. The check reads asyncio's own
loop state (:data:`PRIVATE_ASYNCIO`, checked by the tests on every supported Python): a
uvloop loop's state cannot be read, so it is never parked.

At most one thread is parked; :meth:`LoopPool.take` removes it, so concurrent or nested
``serve()`` calls each get their own loop. In a forked child the parent's parked loop is
dropped (its thread does not exist there, and its epoll instance is the parent's); at exit
the parked thread is ended and joined.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import itertools
import os
import select
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from ._loop import LoopThread

__all__ = ["PRIVATE_ASYNCIO", "LoopPool", "ParkingLoopThread", "loop_leftovers"]

#: The private asyncio loop attributes :func:`loop_leftovers` reads (a missing one reads as
#: something left: the loop is then not reused).
PRIVATE_ASYNCIO: tuple[str, ...] = (
    "_ready",  # ready callbacks (a deque of Handle)
    "_scheduled",  # the timer heap (TimerHandle)
    "_default_executor",  # what run_in_executor(None, ...) uses
    "_asyncgens",  # async generators not finalized yet
    "_transports",  # fd -> selector transport (weak values)
)

T = TypeVar("T")
_executor_numbers = itertools.count(1)

#: Loop turns the teardown's aftermath (connection_lost, cancelled tasks ending) may take.
DRAIN_TURNS = 8

_MISSING = object()


def _settings(loop: asyncio.AbstractEventLoop) -> tuple[object, ...]:
    return (
        loop.get_debug(),
        loop.get_exception_handler(),
        loop.get_task_factory(),
        getattr(loop, "slow_callback_duration", None),
    )


def loop_leftovers(loop_thread: ParkingLoopThread) -> list[str]:
    """What is left on ``loop_thread``'s loop (not running) that a new loop would not have.

    Returns:
        One description per kind of leftover; empty when the loop may be reused.
    """
    loop, selector = loop_thread.loop, loop_thread.selector
    if selector is None:
        return ["a loop whose state cannot be read (not asyncio's)"]
    state: dict[str, Any] = {name: getattr(loop, name, _MISSING) for name in PRIVATE_ASYNCIO}
    missing = [name for name, value in state.items() if value is _MISSING]
    if missing:
        return [f"asyncio without {', '.join(missing)}"]
    found: list[str] = []
    if loop.is_closed() or loop.is_running():
        found.append("a closed or running loop")
    if tasks := asyncio.all_tasks(loop):
        found.append(f"{len(tasks)} task(s)")
    if state["_ready"]:
        found.append(f"{len(state['_ready'])} ready callback(s)")
    if timers := [timer for timer in state["_scheduled"] if not timer.cancelled()]:
        found.append(f"{len(timers)} timer(s)")
    if fds := sorted({key.fd for key in selector.get_map().values()} - loop_thread.own_fds):
        found.append(f"readers or writers on fds {fds}")
    if [t for t in list(state["_transports"].values()) if t is not None and not t.is_closing()]:
        found.append("an open transport")
    executor = state["_default_executor"]
    if executor is not loop_thread.executor:
        found.append("another default executor")
    elif loop_thread.executor is not None and loop_thread.executor.busy:
        found.append("executor work")
    elif loop_thread.executor is not None and loop_thread.executor.shut_down:
        found.append("a shut-down executor")
    if state["_asyncgens"]:
        found.append("async generators to finalize")
    if selector.has_deferred:
        found.append("deferred writes")
    if _settings(loop) != loop_thread.fresh_settings:
        found.append("changed loop settings")
    return found


class _CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """A parked loop's default executor: it knows whether a job is queued or running."""

    def __init__(self, thread_name_prefix: str) -> None:
        super().__init__(thread_name_prefix=thread_name_prefix)
        #: what its workers' names start with
        self.thread_name_prefix = thread_name_prefix
        self._count_lock = threading.Lock()
        self._unfinished = 0
        #: shutdown() was called (loop.shutdown_default_executor() does)
        self.shut_down = False

    @property
    def busy(self) -> bool:
        """Whether a job submitted has not finished."""
        return self._unfinished > 0

    def submit(
        self, fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> concurrent.futures.Future[T]:
        with self._count_lock:
            self._unfinished += 1
        try:
            future = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._finished()
            raise
        future.add_done_callback(self._finished)
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.shut_down = True
        super().shutdown(wait, cancel_futures=cancel_futures)

    def _finished(self, future: object = None) -> None:
        with self._count_lock:
            self._unfinished -= 1


class _Round:
    """One ``start()`` ... ``close()`` of a loop; ``over`` is released when it has ended."""

    __slots__ = ("closing", "over", "parked")

    def __init__(self) -> None:
        self.over = threading.Lock()
        self.over.acquire()
        self.closing = False  # close() stopped the loop (not a driver): it may park
        self.parked = False


class ParkingLoopThread(LoopThread):
    """A :class:`LoopThread` whose ``close()`` parks it in its pool when its loop is clean.

    A parked thread is the pool's: whoever closed it must not use it again. ``start()`` on a
    thread :meth:`LoopPool.take` gave back runs another round on the same loop and thread.

    Args:
        pool: where the thread parks.
        name, spin: as for :class:`LoopThread` (only a ``spin`` loop with the C helper, an
            asyncio loop on a ``SpinningSelector``, can be checked, so parked).
    """

    def __init__(self, pool: LoopPool, name: str, *, spin: float) -> None:
        super().__init__(name, start=False, spin=spin)
        self._pool = pool
        #: the loop's own registrations (its wake-up socket) and settings, as new
        selector = self.selector
        self.own_fds = (
            frozenset(key.fd for key in selector.get_map().values()) if selector else frozenset()
        )
        #: the loop's default executor (one it can tell is idle), for a loop that can park
        self.executor: _CountingExecutor | None = None
        if selector is not None:
            self.executor = _CountingExecutor(f"{name}-executor-{next(_executor_numbers)}")
            self.loop.set_default_executor(self.executor)
        self.fresh_settings = _settings(self.loop)
        # A Lock as a signal: held while parked, released by start() (or retire()).
        self._resume = threading.Lock()
        self._resume.acquire()
        self._round = _Round()
        self._parked = False
        self._retiring = False

    def start(self) -> None:
        """Start the thread, or let a parked one run its next round.

        Raises:
            LifecycleError: it is running already.
        """
        if not self._parked:
            super().start()
            return
        self._round = _Round()
        self._parked = False
        self._resume.release()

    def _run(self) -> None:
        while True:
            this_round = self._round
            try:
                self.loop.run_forever()
                # On this thread: its loop is not running, nothing can change it meanwhile.
                this_round.parked = this_round.closing and self._park()
                if not this_round.parked:
                    self._finish_loop()
                    return
            finally:
                this_round.over.release()
            self._resume.acquire()
            if self._retiring:
                # Idle when parked; anything since was submitted by a taker that then closed
                # without starting: dropped, as for a LoopThread never started.
                self.loop.close()
                return

    def _park(self) -> bool:
        if self._retiring or loop_leftovers(self):
            return False
        self._parked = True
        if not self._pool._park(self):
            self._parked = False
        return self._parked

    def close(self, last: Coroutine[Any, Any, object] | None = None) -> None:
        """Run ``last`` as the loop's final work, then park the thread or end it.

        Args:
            last: as for :meth:`LoopThread.close`. Its exception propagates.
        """
        if self._parked:  # taken from the pool, closed before start()
            if last is not None:
                last.close()
            self.retire()
            return
        if self.selector is None or self._thread is threading.current_thread():
            self._retiring = True
            super().close(last)
            return
        if not self._thread.is_alive():  # never started, or ended: as a LoopThread
            super().close(last)
            return
        this_round = self._round
        this_round.closing = True
        failure = self._submit_last(
            last, lambda: self.loop.call_soon(self._stop_when_drained, DRAIN_TURNS)
        )
        this_round.over.acquire()
        if not this_round.parked:
            self._thread.join()
        if failure:
            raise failure[0]

    def _stop_when_drained(self, turns: int) -> None:
        # A loop stopped at once would keep what the teardown set going (connection_lost,
        # the cancelled tasks' last steps): it would never be clean enough to park.
        ready = getattr(self.loop, "_ready", None)
        if turns and (ready or asyncio.all_tasks(self.loop)):
            self.loop.call_soon(self._stop_when_drained, turns - 1)
        else:
            self.loop.stop()

    def retire(self) -> None:
        """End a parked thread and close its loop (the pool does, when full or closed)."""
        self._retiring = True
        self._parked = False
        self._resume.release()
        self._thread.join()

    def close_in_forked_child(self) -> None:
        """Close the loop of a thread parked in the parent (no thread runs it here)."""
        assert self.selector is not None
        # The inherited epoll descriptor is the parent's epoll instance: unregistering the
        # wake-up socket from it, as loop.close() does, would remove the parent's
        # registration. Point the descriptor at a new, empty instance first.
        fresh = select.epoll()
        os.dup2(fresh.fileno(), self.selector.fileno())
        fresh.close()
        self.loop.close()


class LoopPool:
    """Hands out loop threads and keeps at most one idle one for the next :meth:`take`.

    Args:
        name: the threads' name.
        spin: as for :class:`LoopThread`.
    """

    def __init__(self, name: str, *, spin: float = 0.0) -> None:
        self.name = name
        self.spin = spin
        self._lock = threading.Lock()
        self._idle: ParkingLoopThread | None = None
        self._closed = False
        # Methods, not the lock's own: the child replaces the lock, and forks again.
        os.register_at_fork(
            before=self._before_fork,
            after_in_parent=self._after_fork_in_parent,
            after_in_child=self._after_fork_in_child,
        )
        atexit.register(self.close)

    @property
    def parked(self) -> ParkingLoopThread | None:
        """The thread waiting for the next :meth:`take`, if any."""
        return self._idle

    def is_parked(self, thread: threading.Thread) -> bool:
        """Whether ``thread`` is the parked one's, or an (idle) worker of its executor: it
        runs nothing until the loop is taken."""
        idle = self._idle
        if idle is None:
            return False
        executor = idle.executor
        workers = None if executor is None else executor.thread_name_prefix
        return idle._thread is thread or (workers is not None and thread.name.startswith(workers))

    def take(self) -> ParkingLoopThread:
        """The parked loop thread, or a new one (not started: ``submit`` work, then
        ``start()``); ``close()`` it when done."""
        with self._lock:
            idle, self._idle = self._idle, None
        if idle is not None:
            # While parked, only call_soon_threadsafe (the one thread-safe way in) can have
            # changed the loop: a stale reference posted to it.
            if not getattr(idle.loop, "_ready", True):
                return idle
            idle.retire()
        return ParkingLoopThread(self, self.name, spin=self.spin)

    def _park(self, loop_thread: ParkingLoopThread) -> bool:
        with self._lock:
            if self._closed or self._idle is not None:
                return False
            self._idle = loop_thread
            return True

    def close(self) -> None:
        """End the parked thread, and park none from now on (run at exit)."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, None
        if idle is not None:
            idle.retire()

    def _before_fork(self) -> None:
        self._lock.acquire()

    def _after_fork_in_parent(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.Lock()
        idle, self._idle = self._idle, None
        if idle is not None:
            idle.close_in_forked_child()
