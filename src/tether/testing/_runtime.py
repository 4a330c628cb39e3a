"""``DriverRuntime``: the test's handle on dispatchers, run calls and virtual time.

One runtime exists per process at a time, and its methods are called from the thread that made
it (``quit`` excepted). It owns the foreground dispatcher, attached to that thread and pumped only
inside run calls, and every background dispatcher it starts.

Virtual time (theory): every dispatcher's loop, foreground and background, reads one virtual
clock, which moves only when the runtime moves it. ``advance_time`` moves it explicitly;
``run_until_idle`` moves it only when asked (``jump_to_next_timer``); the other run calls
*auto-jump*: when nothing is runnable on the foreground and no other thread is busy (see
``_loop.Activity``), they jump the clock to the next timer of any dispatcher, or to their
deadline. A run call's ``timeout`` is virtual seconds; while the call waits for another thread,
the same number of real seconds bounds that wait, so a background dispatcher that never answers
still ends the call.

Deadlocks (as trio finds them): ``run()``, ``run_until()`` and ``run_to_completion()`` without a
timeout raise :class:`~tether.errors.DeadlockError` when nothing can ever run again: no ready
callback and no timer on any dispatcher, every other kit thread settled, no executor job or
``perform_blocking_work`` running, no file descriptor watched by any loop (sockets, pipes,
subprocesses), and no thread alive that the test started after the runtime (it might still
post). Anything else waits as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar, overload

from tether.errors import DeadlockError, LifecycleError

from ._dispatcher import BackgroundDispatcher, ForegroundDispatcher, _await
from ._loop import Activity, ForegroundLoop, SyncWait, thread_state
from ._quiescence import describe_awaited, nothing_can_run

__all__ = ["DriverRuntime"]


def _noop() -> None:
    pass


T = TypeVar("T")

_active_lock = threading.Lock()
_active: DriverRuntime | None = None

_RUN_CALLS = frozenset(
    {
        "run_until_idle",
        "run_until",
        "run_with_timeout",
        "run_to_completion",
        "run",
        "advance_time",
        "perform_blocking_work",
        "start_background_dispatcher",
    }
)


class DriverRuntime:
    """The driver runtime of one test: dispatchers, run calls and a virtual clock.

    Use it as a context manager (``with DriverRuntime() as runtime:``) or call :meth:`close`.

    Raises:
        LifecycleError: another runtime is open in this process.
    """

    def __init__(self) -> None:
        global _active
        with _active_lock:
            if _active is not None:
                raise LifecycleError(
                    "a DriverRuntime is open already in this process; close it first "
                    "(one runtime at a time)"
                )
            _active = self
        self._thread = threading.get_ident()
        #: threads alive before the runtime: they cannot be waiting to post to it
        self._threads_before = frozenset(threading.enumerate())  # objects: idents are reused
        self._activity = Activity()
        self._wait_lock = threading.Lock()
        self._waits: set[SyncWait] = set()
        self._quit = False
        self._shut_down = False
        self._closed = False
        self._background: list[BackgroundDispatcher] = []
        try:
            self._foreground = ForegroundDispatcher(self)
        except BaseException:
            with _active_lock:
                _active = None
            raise
        self._activity.wake_foreground = self._wake_foreground
        thread_state.dispatcher = self._foreground

    @staticmethod
    def current() -> DriverRuntime | None:
        """The open runtime of this process, if any."""
        return _active

    @property
    def foreground_dispatcher(self) -> ForegroundDispatcher:
        """The dispatcher attached to the test's thread (run only inside run calls)."""
        return self._foreground

    @property
    def background_dispatchers(self) -> list[BackgroundDispatcher]:
        """Every background dispatcher started so far (a copy)."""
        return list(self._background)

    def now(self) -> float:
        """The virtual clock in seconds (every dispatcher's ``loop.time()``); starts at 0."""
        return self._activity.now

    # -- run calls ------------------------------------------------------------------------------

    def run_until_idle(self, *, jump_to_next_timer: bool = False) -> bool:
        """Run foreground callbacks, due timers and ready I/O until none is left.

        By default it never waits and never moves the virtual clock.

        Args:
            jump_to_next_timer: also wait until every other thread has settled, then jump the
                clock to the next timer of any dispatcher (if there is one), run what falls due,
                and return once all is idle and settled again.

        Returns:
            True when the clock jumped.
        """
        if not jump_to_next_timer:
            self._pump("run_until_idle", None, None, jumps=0)
            return False
        before = self._activity.now
        self._pump("run_until_idle", None, None, jumps=1)
        return self._activity.now != before

    def run_until(self, condition: Callable[[], bool], timeout: float | None = None) -> bool:
        """Run the foreground until ``condition()`` holds (checked between callbacks).

        Args:
            condition: checked before every loop iteration.
            timeout: virtual seconds (also bounds real waits for other threads).

        Returns:
            True when the condition holds, False when the timeout fired first.
        """
        name = getattr(condition, "__qualname__", None) or repr(condition)
        return self._pump("run_until", condition, timeout, awaiting=lambda: f"run_until({name})")

    def run_with_timeout(self, timeout: float) -> bool:
        """Run the foreground for ``timeout`` virtual seconds, or until :meth:`quit`.

        Returns:
            True if the timeout fired, False if :meth:`quit` was called.
        """
        return not self._pump("run_with_timeout", self._quitting, timeout)

    def run(self) -> None:
        """Run the foreground until :meth:`quit` is called (returns at once if it was)."""
        self._pump("run", self._quitting, None, awaiting=lambda: "quit()")

    def quit(self) -> None:
        """Make :meth:`run` / :meth:`run_with_timeout` return. Callable from any thread."""
        self._quit = True
        if threading.get_ident() != self._thread:
            self._foreground.loop.wake()

    def reset_quit(self) -> None:
        """Forget an earlier :meth:`quit`, so :meth:`run` runs again."""
        self._check("reset_quit")
        self._quit = False

    @overload
    def run_to_completion(
        self, awaitable: Coroutine[Any, Any, T], timeout: float | None = None
    ) -> T: ...
    @overload
    def run_to_completion(
        self, awaitable: concurrent.futures.Future[T], timeout: float | None = None
    ) -> T: ...
    @overload
    def run_to_completion(self, awaitable: Awaitable[T], timeout: float | None = None) -> T: ...

    def run_to_completion(self, awaitable: Any, timeout: float | None = None) -> Any:
        """Run the foreground until ``awaitable`` finishes; return its result or raise its error.

        Args:
            awaitable: a coroutine (run as a foreground task), a foreground task or future,
                a ``concurrent.futures.Future`` (e.g. from a background dispatcher or
                ``DispatcherBound.async_call``) or any other awaitable.
            timeout: virtual seconds (also bounds real waits for other threads).

        Raises:
            TimeoutError: not done within ``timeout``; a task made here from a coroutine is
                cancelled then.
            DeadlockError: nothing can ever finish it (see the module docstring); a task made
                here is cancelled.
            TypeError: ``awaitable`` is an asyncio future of another loop, or not awaitable.
            Exception: whatever the awaitable raised.
        """
        return self._run_to_completion(awaitable, timeout, detect=True)

    def _run_to_completion(self, awaitable: Any, timeout: float | None, *, detect: bool) -> Any:
        loop = self._foreground.loop
        created = False
        future: asyncio.Future[Any]
        if isinstance(awaitable, concurrent.futures.Future):
            future = asyncio.wrap_future(awaitable, loop=loop)
        elif isinstance(awaitable, asyncio.Future):
            if awaitable.get_loop() is not loop:
                raise TypeError(
                    "run_to_completion() got an asyncio future of another loop; a background "
                    "dispatcher's spawn() returns a thread-safe future to pass instead"
                )
            future = awaitable
        elif inspect.iscoroutine(awaitable) or inspect.isawaitable(awaitable):
            self._check("run_to_completion")
            coro = awaitable if inspect.iscoroutine(awaitable) else _await(awaitable)
            future = loop.create_task(coro)
            created = True
        else:
            raise TypeError(f"run_to_completion() needs an awaitable, got {awaitable!r}")
        try:
            done = self._pump(
                "run_to_completion",
                future.done,
                timeout,
                awaiting=(lambda: describe_awaited(awaitable, future)) if detect else None,
            )
        except DeadlockError:
            if created:
                future.cancel()
                self._pump("run_to_completion", None, None, jumps=0)
            raise
        if not done:
            if created:
                future.cancel()
                self._pump("run_to_completion", None, None, jumps=0)
            raise TimeoutError(f"run_to_completion(): not done after {timeout} s (virtual time)")
        return future.result()

    def advance_time(self, seconds: float) -> None:
        """Move the virtual clock ``seconds`` forward, running timers in order as they fall due.

        At every step the foreground runs until idle and other threads have settled (so work
        a timer hands to a background dispatcher is finished before the clock moves on).

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"advance_time() cannot go back in time (got {seconds})")
        self._pump("advance_time", None, seconds, real_timeout=False)

    def perform_blocking_work(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a new thread while pumping the foreground; return its result.

        Use it for code that blocks on the foreground (a sync call into a foreground object).
        The virtual clock stays still while ``fn`` runs, except while it is blocked in a kit
        ``sync_call``.

        Raises:
            Exception: whatever ``fn`` raised.
        """
        self._check("perform_blocking_work")
        activity = self._activity
        result: concurrent.futures.Future[T] = concurrent.futures.Future()
        outcome = asyncio.wrap_future(result, loop=self._foreground.loop)

        def work() -> None:
            try:
                value = activity.run_helper(fn, *args)
            except BaseException as exc:
                result.set_exception(exc)
            else:
                result.set_result(value)
            finally:
                activity.helper_finished()

        activity.helper_started()
        thread = threading.Thread(target=work, name="tether-blocking-work", daemon=True)
        try:
            thread.start()
        except BaseException:
            activity.helper_finished()
            raise
        try:
            return self.run_to_completion(outcome)
        finally:
            thread.join()

    # -- dispatchers ----------------------------------------------------------------------------

    def start_background_dispatcher(self, name: str | None = None) -> BackgroundDispatcher:
        """Start a dispatcher on a thread of its own, owned by this runtime.

        Objects living there must not be touched from the test directly: wrap them in
        :class:`~tether.testing.DispatcherBound`.
        """
        self._check("start_background_dispatcher")
        dispatcher = BackgroundDispatcher(self, name or f"background-{len(self._background) + 1}")
        self._background.append(dispatcher)
        return dispatcher

    def shutdown_all_dispatchers(self) -> None:
        """Shut every dispatcher down and join every thread; run calls are refused afterwards.

        Order: foreground tasks are cancelled (and unwind while the background still runs);
        background dispatchers cancel their tasks and stop, while the foreground is pumped so
        their last calls into it complete; then the foreground's remaining callbacks, async
        generators and executor finish. Calls still pending fail with LifecycleError; blocked
        ``sync_call`` waits are released. Idempotent.
        """
        self._check("shutdown_all_dispatchers")
        if self._shut_down:
            return
        loop = self._foreground.loop
        tasks = asyncio.all_tasks(loop)
        for task in tasks:
            task.cancel()
        if tasks:
            self._pump("shutdown", lambda: all(t.done() for t in tasks), None)
        background = [d for d in self._background if not d.shut_down]
        if background:
            for dispatcher in background:
                dispatcher._request_shutdown()
            finished = [asyncio.wrap_future(d.finished, loop=loop) for d in background]
            self._pump("shutdown", lambda: all(f.done() for f in finished), None)
            for dispatcher in background:
                dispatcher.thread.join()
                dispatcher._fail_pending()
        self._pump("shutdown", None, None, jumps=0)
        if loop._asyncgens:  # type: ignore[attr-defined]  # see _loop.PRIVATE_ASYNCIO
            loop.reusable = False
            self._run_to_completion(loop.shutdown_asyncgens(), None, detect=False)
        if loop.kit_executor is not None:
            loop.reusable = False
            self._run_to_completion(loop.shutdown_default_executor(), None, detect=False)
        self._foreground._shut_down = True
        self._foreground._fail_pending()
        self._shut_down = True
        with self._wait_lock:
            waits = list(self._waits)
        for wait in waits:
            wait.fail(LifecycleError(f"{wait.what}: the runtime shut down while it was blocked"))

    def close(self) -> None:
        """Shut all dispatchers down and release the runtime (a new one may be made). Idempotent.

        Raises:
            LifecycleError: called from another thread than the one that made the runtime.
        """
        global _active
        if self._closed:
            return
        self._check("close")
        try:
            self.shutdown_all_dispatchers()
        finally:
            self._closed = True
            self._foreground.loop.release()
            self._activity.wake_foreground = _noop  # no cycle back to the runtime
            thread_state.dispatcher = None
            with _active_lock:
                if _active is self:
                    _active = None

    def __enter__(self) -> DriverRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "shut down" if self._shut_down else "open"
        return f"<DriverRuntime {state} t={self.now():g}s background={len(self._background)}>"

    # -- internals ------------------------------------------------------------------------------

    def _wake_foreground(self) -> None:
        """Wake the foreground's run call, and the test thread blocked in a sync call."""
        self._foreground.loop.wake()
        wait = self._activity.foreground_wait
        if wait is not None:
            wait.nudge()

    def _quitting(self) -> bool:
        return self._quit

    def _check(self, method: str) -> None:
        if threading.get_ident() != self._thread:
            raise LifecycleError(
                f"DriverRuntime.{method}() must be called on the thread that created the "
                f"runtime (thread {self._thread}), not thread {threading.get_ident()}"
            )
        if self._closed:
            raise LifecycleError(f"DriverRuntime.{method}(): the runtime is closed")
        if self._shut_down and method in _RUN_CALLS:
            raise LifecycleError(
                f"DriverRuntime.{method}() is not allowed after shutdown_all_dispatchers()"
            )

    def _pump(
        self,
        method: str,
        stop: Callable[[], bool] | None,
        timeout: float | None,
        *,
        jumps: int | None = None,
        real_timeout: bool = True,
        awaiting: Callable[[], str] | None = None,
    ) -> bool:
        """The one run loop behind every run call; True when ``stop()`` held, else False.

        Args:
            stop: ends the call when it holds (checked before every loop iteration).
            timeout: virtual seconds; also bounds real waits unless ``real_timeout`` is False.
            jumps: how often the clock may auto-jump when everything is settled (None: no
                limit); with 0 the call returns when the foreground is idle, without waiting
                for other threads; else it returns once all is settled and no jump is left.
            awaiting: what the call waits for, named in a DeadlockError; None: never raise
                one (the call waits, as shutdown does).
        """
        self._check(method)
        if timeout is not None and timeout < 0:
            raise ValueError(f"{method}(): timeout must not be negative (got {timeout})")
        loop = self._foreground.loop
        hooks = loop.enter()
        try:
            return self._pump_entered(loop, stop, timeout, jumps, real_timeout, awaiting)
        finally:
            loop.leave(hooks)

    def _pump_entered(
        self,
        loop: ForegroundLoop,
        stop: Callable[[], bool] | None,
        timeout: float | None,
        jumps: int | None,
        real_timeout: bool,
        awaiting: Callable[[], str] | None,
    ) -> bool:
        if loop.dispatch(stop):
            return True
        if jumps == 0:
            return False
        virtual_deadline = None if timeout is None else loop.time() + timeout
        real_deadline = None if timeout is None or not real_timeout else time.monotonic() + timeout
        while True:
            settled = loop.idle_and_settled()
            if settled is None:
                pass  # a post arrived between dispatch and the check
            elif not settled:
                remaining = None if real_deadline is None else real_deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    loop.wait_for_events(0)
                    return False
                loop.wait_for_events(remaining)
            # Other threads may have changed what stop() looks at before they settled.
            elif stop is not None and stop():
                return True
            elif jumps == 0:
                return False
            else:
                when = loop.next_deadline()
                if virtual_deadline is not None and (when is None or when > virtual_deadline):
                    loop.advance_to(virtual_deadline)
                    return False
                if when is None and jumps is not None:
                    return False
                if when is None:
                    # Nothing can happen by itself: wait for I/O, a post, or another thread
                    # going busy and settling again (the waiting mark makes that wake us).
                    loop.set_waiting()
                    if stop is not None and stop():
                        loop.wait_for_events(0)
                        return True
                    if awaiting is not None and nothing_can_run(
                        loop, self._background, self._threads_before
                    ):
                        loop.wait_for_events(0)
                        raise DeadlockError(
                            f"{awaiting()}: nothing can ever run again: no ready callbacks, no "
                            f"timers, no background dispatcher busy, no blocking work or I/O "
                            f"pending"
                        )
                    loop.wait_for_events(None)
                else:
                    loop.advance_to(when)
                    if jumps is not None:
                        jumps -= 1
            if loop.dispatch(stop):
                return True
