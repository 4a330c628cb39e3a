"""Dispatchers: an event loop plus the thread that runs it.

The *foreground* dispatcher runs on the test's thread, only inside the runtime's run calls; a
*background* dispatcher runs its loop on a thread of its own until the runtime shuts it down.
Both accept work from any thread (``post``) and hand out futures for calls made from another
thread (``submit``, used by :class:`~tether.testing.DispatcherBound`).

Blocking calls (``call_sync``) check for deadlocks before they block: a call to the caller's own
dispatcher, or to a dispatcher whose thread is (transitively) blocked waiting on the caller,
raises :class:`~tether.errors.DeadlockError` at once. While blocked, the waiter is recorded in
the posted work's context (see ``_loop.SYNC_CHAIN``), so work that the call itself posts back to
the blocked dispatcher fails the wait at once too.
The test thread, blocked in a sync call, is not in a run call, so nothing else would move the
virtual clock for the call's timers: it does so itself (``_wait_on_the_test_thread``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import inspect
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from tether.errors import DeadlockError, LifecycleError

from ._loop import SYNC_CHAIN, BackgroundLoop, ForegroundLoop, SyncWait, thread_state

if TYPE_CHECKING:
    from ._runtime import DriverRuntime

__all__ = ["BackgroundDispatcher", "Dispatcher", "ForegroundDispatcher", "current_dispatcher"]

T = TypeVar("T")


def current_dispatcher() -> Dispatcher | None:
    """The dispatcher whose thread is running the caller, if any.

    On the thread that created the :class:`~tether.testing.DriverRuntime` this is the foreground
    dispatcher (it is attached to that thread, as in Fuchsia), inside a background dispatcher's
    callbacks it is that dispatcher, elsewhere ``None``.
    """
    return thread_state.dispatcher


class Dispatcher:
    """Runs callbacks and tasks on one event loop (``loop``), in order, on one thread.

    Attributes:
        name: a name for messages (``"foreground"``, ``"background-1"``, ...).
        loop: the dispatcher's asyncio event loop.
    """

    loop: asyncio.AbstractEventLoop

    def __init__(
        self, runtime: DriverRuntime, name: str, loop: ForegroundLoop | BackgroundLoop
    ) -> None:
        self.name = name
        self.loop = loop
        loop.owner = self
        # Weak: a closed runtime and its dispatchers are freed by reference counting, not by
        # the cycle collector (a full collection is slow in a big test process).
        self._runtime_ref = weakref.ref(runtime)
        self._shut_down = False
        self._lock = threading.Lock()
        self._pending: set[concurrent.futures.Future[Any]] = set()
        #: the dispatcher this one's thread is blocked on in a sync call, if any
        self.blocked_on: Dispatcher | None = None

    @property
    def _runtime(self) -> DriverRuntime:
        runtime = self._runtime_ref()
        if runtime is None:
            raise LifecycleError(f"dispatcher {self.name!r}: its runtime is gone")
        return runtime

    @property
    def shut_down(self) -> bool:
        """True once the runtime has shut this dispatcher down."""
        return self._shut_down

    def is_current(self) -> bool:
        """True when called from this dispatcher's thread."""
        return thread_state.dispatcher is self

    def post(self, fn: Callable[..., object], *args: Any) -> None:
        """Run ``fn(*args)`` on this dispatcher soon. Callable from any thread.

        Raises:
            LifecycleError: the dispatcher is shut down.
        """
        self._check_open("post")
        self.loop.call_soon_threadsafe(fn, *args)

    def _check_open(self, method: str) -> None:
        if self._shut_down:
            raise LifecycleError(f"dispatcher {self.name!r} is shut down; {method}() is refused")

    # -- calls with results (used by DispatcherBound and the fixtures) --------------------------

    def submit(
        self, fn: Callable[..., T | Awaitable[T]], *args: Any, wait: SyncWait | None = None
    ) -> concurrent.futures.Future[T]:
        """Run ``fn(*args)`` here (awaiting it if it returns an awaitable); a future of its result.

        Once the dispatcher is shut down, ``fn`` runs synchronously on the caller's thread, as in
        Fuchsia (it may not return an awaitable then).
        """
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if self._shut_down:
            _run_inline(self, fn, args, future)
            return future
        context = contextvars.copy_context()
        if wait is not None:
            context.run(SYNC_CHAIN.set, (*SYNC_CHAIN.get(), wait))
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        try:
            self.loop.call_soon_threadsafe(self._invoke, fn, args, future, context=context)
        except RuntimeError as exc:  # the loop closed under us
            _settle(future, exc=LifecycleError(f"dispatcher {self.name!r} is shut down"))
            raise LifecycleError(f"dispatcher {self.name!r} is shut down") from exc
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def _invoke(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        future: concurrent.futures.Future[Any],
    ) -> None:
        if future.cancelled():
            return
        try:
            result = fn(*args)
        except BaseException as exc:
            _settle(future, exc=exc)
            if not isinstance(exc, Exception):
                raise
            return
        if not inspect.isawaitable(result):
            _settle(future, result=result)
            return
        task = self.loop.create_task(_await(result))
        task.add_done_callback(lambda done: _copy_outcome(done, future))
        loop = self.loop

        def cancel_task(done: concurrent.futures.Future[Any]) -> None:
            if done.cancelled() and not task.done():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(task.cancel)

        future.add_done_callback(cancel_task)

    def _fail_pending(self) -> None:
        with self._lock:
            pending = list(self._pending)
        for future in pending:
            _settle(
                future,
                exc=LifecycleError(f"dispatcher {self.name!r} shut down before the call finished"),
            )

    def call_sync(self, fn: Callable[..., T | Awaitable[T]], *args: Any, what: str) -> T:
        """Run ``fn(*args)`` here and block the calling thread until it finished.

        Raises:
            DeadlockError: the caller runs on this dispatcher, this dispatcher's thread is
                (transitively) blocked waiting on the caller, the call posts work back to a
                dispatcher blocked on it, or (from the test thread) the call waits on a timer
                that a foreground timer precedes.
        """
        if self._shut_down:
            return self.submit(fn, *args).result()
        caller = thread_state.dispatcher
        if caller is self:
            raise DeadlockError(
                f"{what}: called on the thread of dispatcher {self.name!r}, which must run the "
                f"call; blocking would wait forever. Use async_call()"
                + (" and run_to_completion()." if self.name == "foreground" else ".")
            )
        runtime = self._runtime
        with runtime._wait_lock:
            # Check and record under one lock, so two threads calling each other at the same
            # moment cannot both miss the cycle.
            path = [self.name]
            blocked_on = self.blocked_on
            while blocked_on is not None and caller is not None:
                path.append(blocked_on.name)
                if blocked_on is caller:
                    raise DeadlockError(
                        f"{what}: dispatcher {self.name!r} is blocked waiting on the caller's "
                        f"dispatcher {caller.name!r} (wait chain: {' -> '.join(path)}); "
                        f"blocking would wait forever. Use async_call() instead."
                    )
                blocked_on = blocked_on.blocked_on
            wait = SyncWait(blocked=caller, target=self, what=what)
            if caller is not None:
                caller.blocked_on = self
            runtime._waits.add(wait)
        try:
            return _block(lambda: self.submit(fn, *args, wait=wait), wait)
        finally:
            with runtime._wait_lock:
                wait.active = False
                runtime._waits.discard(wait)
                if caller is not None:
                    caller.blocked_on = None


def _block(submit: Callable[[], concurrent.futures.Future[T]], wait: SyncWait) -> T:
    """Submit the call and block this thread until it is done or the wait fails.

    The blocked thread counts as settled meanwhile (a background loop, or a tracked helper
    thread); ``wait.release`` counts it busy again before waking it.
    """
    caller = wait.blocked
    helper = thread_state.helper
    background = caller.loop if caller is not None else None
    if not isinstance(background, BackgroundLoop):
        background = None

    def settle() -> None:
        if background is not None:
            background.set_blocked(True)
        if helper is not None:
            helper.helper_finished()

    def busy_again() -> None:
        if background is not None:
            background.set_blocked(False)
        if helper is not None:
            helper.helper_started()

    try:
        future = submit()
        future.add_done_callback(lambda _: wait.release())
        wait.settle(settle, busy_again)
        if caller is not None and isinstance(caller.loop, ForegroundLoop):
            _wait_on_the_test_thread(wait, caller.loop)
        else:
            wait.event.wait()
    finally:
        wait.active = False
        wait.release()
    if wait.error is not None:
        raise wait.error
    return future.result()


def _wait_on_the_test_thread(wait: SyncWait, loop: ForegroundLoop) -> None:
    """Block the test thread in a sync call, moving the virtual clock for the call's timers.

    Only run calls move the clock, and the test thread is not in one. So when everything else
    has settled and a background timer is pending, the call may be waiting for it: jump the
    clock to it, as a run call would. If a foreground timer is due first, the clock cannot pass
    it without running it, which the blocked thread cannot: that is a deadlock.
    """
    activity = loop.activity
    nudged = activity.block_foreground(wait)
    try:
        while True:
            if not nudged:
                wait.event.wait()
            nudged = False
            if wait.ended():
                return
            settled, deadline = activity.settled_deadline()
            if not settled or deadline is None:
                continue  # busy, or waiting on I/O from outside
            own = loop.next_timer()
            if own is not None and own <= deadline:
                raise DeadlockError(
                    f"{wait.what}: the call waits on a timer at t={deadline:g}s (virtual), but "
                    f"a foreground timer is due first (t={own:g}s) and the foreground cannot "
                    f"run while its thread is blocked. Use async_call() and run_to_completion()."
                )
            loop.advance_to(deadline)
    finally:
        activity.block_foreground(None)


class ForegroundDispatcher(Dispatcher):
    """The dispatcher attached to the test's thread; runs only inside run calls."""

    loop: ForegroundLoop

    def __init__(self, runtime: DriverRuntime) -> None:
        super().__init__(runtime, "foreground", ForegroundLoop.acquire(runtime._activity))

    def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Create a task for ``coro`` on the foreground; it runs when the test pumps.

        Raises:
            LifecycleError: not called on the foreground thread, or the dispatcher is shut down.
        """
        if not self.is_current():
            coro.close()
            raise LifecycleError(
                "ForegroundDispatcher.spawn() must be called on the foreground thread; "
                "use post() or DispatcherBound from other threads"
            )
        if self._shut_down:
            coro.close()
            self._check_open("spawn")
        return self.loop.create_task(coro)


class BackgroundDispatcher(Dispatcher):
    """A dispatcher running its own event loop on its own thread (real time)."""

    loop: BackgroundLoop

    def __init__(self, runtime: DriverRuntime, name: str) -> None:
        super().__init__(runtime, name, BackgroundLoop(runtime._activity))
        self._stop_requested: asyncio.Future[None] = self.loop.create_future()
        #: done once the thread has finished all its cleanup
        self.finished: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.thread = threading.Thread(target=self._main, name=f"tether-{name}", daemon=True)
        self.thread.start()

    def spawn(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` as a task on this dispatcher; a thread-safe future of its result.

        Raises:
            LifecycleError: the dispatcher is shut down.
        """
        if self._shut_down:
            coro.close()
            self._check_open("spawn")
        return self.submit(lambda: coro)

    def _main(self) -> None:
        thread_state.dispatcher = self
        loop = self.loop
        try:
            loop.run_until_complete(self._stop_requested)
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            thread_state.dispatcher = None
            loop.retire()
            loop.close()
            self.finished.set_result(None)

    def _request_shutdown(self) -> None:
        self._shut_down = True
        stop = self._stop_requested

        def request() -> None:
            if not stop.done():
                stop.set_result(None)

        with contextlib.suppress(RuntimeError):  # already closed
            self.loop.call_soon_threadsafe(request)


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


def _settle(
    future: concurrent.futures.Future[Any], *, result: Any = None, exc: BaseException | None = None
) -> None:
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:  # cancelled or failed by a shutdown meanwhile
        pass


def _copy_outcome(task: asyncio.Future[Any], future: concurrent.futures.Future[Any]) -> None:
    if task.cancelled():
        future.cancel()
    elif (exc := task.exception()) is not None:
        _settle(future, exc=exc)
    else:
        _settle(future, result=task.result())


def _run_inline(
    dispatcher: Dispatcher,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    future: concurrent.futures.Future[Any],
) -> None:
    try:
        result = fn(*args)
    except BaseException as exc:
        _settle(future, exc=exc)
        if not isinstance(exc, Exception):
            raise
        return
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        _settle(
            future,
            exc=LifecycleError(
                f"dispatcher {dispatcher.name!r} is shut down: its calls run synchronously "
                f"and cannot await"
            ),
        )
        return
    _settle(future, result=result)
