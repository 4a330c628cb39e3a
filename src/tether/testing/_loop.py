"""The event loops behind the test kit's dispatchers, and the bookkeeping they share.

Theory of operation
-------------------

*Foreground loop* (:class:`ForegroundLoop`). A plain ``asyncio.SelectorEventLoop`` whose
``time()`` is a virtual clock. It is never run with ``run_forever``: the runtime pumps it by
calling ``_run_once()`` itself, and only when a callback is ready or a timer is due, so
``_run_once`` always polls the selector with timeout 0 and never waits on real time. When a run
call has to wait, it blocks on the loop's selector directly (``wait_for_events``): a callback
posted from another thread (``call_soon_threadsafe``) writes to the loop's self-pipe and wakes it.

*Activity* (:class:`Activity`). Virtual time may only jump when nothing but foreground timers can
make progress. Every background loop and every helper thread (``perform_blocking_work``, executor
jobs) reports whether it is *settled* to one shared, lock-protected :class:`Activity`:

- a background loop is settled while it blocks in ``select()`` with no timer pending and nothing
  ready, or while its thread is blocked in a kit ``sync_call``; a post to it unsettles it at once
  (the post and the flag change happen under the same lock, so there is no gap);
- a helper thread is busy from start until its result has been posted back, except while it
  blocks in a kit ``sync_call``.

The foreground checks ``Activity.settled()`` under that lock together with its own ready queue;
when something is still busy it blocks on its selector and whoever settles wakes it.

*Sync-call chains* (:data:`SYNC_CHAIN`). A blocking call records a :class:`SyncWait` in a
context variable of the work it posts. Context variables follow asyncio hops (tasks copy them,
``call_soon_threadsafe`` captures them), so when that work, or anything it spawned, posts to a
dispatcher whose thread is blocked in one of the chain's waits, the tracked loops' overridden
``call_soon_threadsafe`` sees it and fails the wait with :class:`~tether.errors.DeadlockError`.

Private asyncio API used here (pinned by ``tests/testing/test_runtime.py``): ``_run_once``,
``_ready``, ``_scheduled`` (heap of ``TimerHandle`` with ``_when`` / ``_cancelled``),
``_timer_cancelled_count``, ``_clock_resolution``, ``_selector``, ``_process_events``,
``_thread_id``, ``_asyncgen_firstiter_hook`` / ``_asyncgen_finalizer_hook`` and
``asyncio.events._set_running_loop``: the same steps ``run_forever`` takes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import heapq
import math
import selectors
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from tether.errors import DeadlockError, LifecycleError

if TYPE_CHECKING:
    from ._dispatcher import Dispatcher

__all__ = [
    "SYNC_CHAIN",
    "Activity",
    "BackgroundLoop",
    "ForegroundLoop",
    "SyncWait",
    "thread_state",
]

T = TypeVar("T")


class _ThreadState(threading.local):
    """Per-thread facts: which dispatcher runs here, and whether this is a tracked helper."""

    dispatcher: Dispatcher | None = None
    helper: Activity | None = None


thread_state = _ThreadState()


@dataclass(eq=False)
class SyncWait:
    """One thread blocked in a kit sync call, waiting for ``target``."""

    blocked: Dispatcher | None
    target: Dispatcher
    what: str
    event: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    active: bool = True

    def fail(self, error: BaseException) -> None:
        if self.active and self.error is None:
            self.error = error
            self.event.set()


SYNC_CHAIN: contextvars.ContextVar[tuple[SyncWait, ...]] = contextvars.ContextVar(
    "tether_sync_chain", default=()
)


def _check_post(owner: Dispatcher | None, context: contextvars.Context | None) -> None:
    chain = SYNC_CHAIN.get() if context is None else context.get(SYNC_CHAIN, ())
    for wait in chain:
        if wait.active and owner is not None and wait.blocked is owner:
            wait.fail(
                DeadlockError(
                    f"{wait.what}: the call posted work to dispatcher {owner.name!r}, whose "
                    f"thread is blocked waiting for that same call, so the work could never "
                    f"run. Use async_call() and await the result instead of sync_call()."
                )
            )


class Activity:
    """Which threads besides the foreground may still do work (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._unsettled: set[BackgroundLoop] = set()
        self._busy_helpers = 0
        self._foreground_waiting = False
        self.wake_foreground: Callable[[], None] = _noop

    def settled(self) -> bool:
        """Nothing outside the foreground is running or about to run (call under ``lock``)."""
        return not self._unsettled and self._busy_helpers == 0

    def set_foreground_waiting(self, waiting: bool) -> None:
        """Call under ``lock``."""
        self._foreground_waiting = waiting

    def _changed(self) -> bool:
        return self._foreground_waiting and self.settled()

    def mark(self, loop: BackgroundLoop, busy: bool) -> None:
        with self.lock:
            if busy:
                self._unsettled.add(loop)
                return
            self._unsettled.discard(loop)
            wake = self._changed()
        if wake:
            self.wake_foreground()

    def mark_locked(self, loop: BackgroundLoop, busy: bool) -> bool:
        """Like :meth:`mark` under a held ``lock``; returns whether to wake the foreground."""
        if busy:
            self._unsettled.add(loop)
            return False
        self._unsettled.discard(loop)
        return self._changed()

    def helper_started(self) -> None:
        with self.lock:
            self._busy_helpers += 1

    def helper_finished(self) -> None:
        with self.lock:
            self._busy_helpers -= 1
            wake = self._changed()
        if wake:
            self.wake_foreground()

    def run_helper(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` as this activity's helper thread (so sync waits settle it)."""
        thread_state.helper = self
        try:
            return fn(*args)
        finally:
            thread_state.helper = None


def _noop() -> None:
    pass


class _TrackedLoop(asyncio.SelectorEventLoop):
    """Shared by both loops: deadlock checks on posts, tracked executor jobs."""

    _ready: deque[asyncio.Handle]
    _scheduled: list[asyncio.TimerHandle]
    _selector: selectors.BaseSelector
    _clock_resolution: float
    _timer_cancelled_count: int
    _thread_id: int | None

    def __init__(self, activity: Activity, selector: selectors.BaseSelector) -> None:
        self.activity = activity
        self.owner: Dispatcher | None = None
        super().__init__(selector)
        self.executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="tether-executor")
        self.set_default_executor(self.executor)

    def call_soon_threadsafe(  # type: ignore[override]
        self,
        callback: Callable[..., object],
        *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        _check_post(self.owner, context)
        with self.activity.lock:
            handle = super().call_soon_threadsafe(callback, *args, context=context)
            wake = self._posted_locked()
        if wake:
            self.activity.wake_foreground()
        return handle

    def _posted_locked(self) -> bool:
        return False

    def run_in_executor(  # type: ignore[override]
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[..., T],
        *args: Any,
    ) -> asyncio.Future[T]:
        activity = self.activity
        activity.helper_started()
        try:
            job = (executor or self.executor).submit(activity.run_helper, func, *args)
        except BaseException:
            activity.helper_finished()
            raise
        result = asyncio.wrap_future(job, loop=self)
        # Registered after wrap_future's own callback: the result is posted to this loop
        # before the helper counts as finished, so there is no moment where nothing looks busy.
        job.add_done_callback(lambda _: activity.helper_finished())
        return result

    def next_timer(self) -> float | None:
        """When the earliest live timer is due (drops cancelled ones, as ``_run_once`` does)."""
        scheduled = self._scheduled
        while scheduled and scheduled[0]._cancelled:
            self._timer_cancelled_count -= 1
            handle = heapq.heappop(scheduled)
            handle._scheduled = False  # type: ignore[attr-defined]
        return scheduled[0].when() if scheduled else None

    def run_once(self) -> None:
        cast_any: Any = self
        cast_any._run_once()

    def process_events(self, events: list[tuple[selectors.SelectorKey, int]]) -> None:
        cast_any: Any = self
        cast_any._process_events(events)


class ForegroundLoop(_TrackedLoop):
    """The foreground dispatcher's loop: virtual clock, pumped by the runtime only."""

    def __init__(self, activity: Activity) -> None:
        self._now = 0.0
        super().__init__(activity, selectors.DefaultSelector())
        self._callback_errors: deque[BaseException] = deque()
        self.set_exception_handler(self._on_exception)

    def time(self) -> float:
        """The virtual clock (seconds); starts at 0 and moves only when the runtime moves it."""
        return self._now

    def run_forever(self) -> None:
        raise LifecycleError(
            "the foreground loop runs only inside DriverRuntime run calls "
            "(run_until_idle, run_to_completion, ...)"
        )

    def _on_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if "handle" in context and isinstance(error, BaseException):
            self._callback_errors.append(error)  # re-raised by the run call
        else:
            loop.default_exception_handler(context)

    # -- pumping (foreground thread only) -------------------------------------------------------

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Make this the running loop of the calling thread, as ``run_forever`` does."""
        if self._thread_id is not None:
            raise LifecycleError(
                "a DriverRuntime run call was made from inside a foreground callback; "
                "run calls do not nest"
            )
        self._check_closed()  # type: ignore[attr-defined]
        old_hooks = sys.get_asyncgen_hooks()
        cast_any: Any = self
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(
            firstiter=cast_any._asyncgen_firstiter_hook,
            finalizer=cast_any._asyncgen_finalizer_hook,
        )
        asyncio.events._set_running_loop(self)
        try:
            yield
        finally:
            asyncio.events._set_running_loop(None)
            self._thread_id = None
            sys.set_asyncgen_hooks(*old_hooks)

    def _due(self) -> bool:
        when = self.next_timer()
        # The same test _run_once applies, so a "due" timer always runs.
        return when is not None and when < self._now + self._clock_resolution

    def dispatch(self, stop: Callable[[], bool] | None) -> bool:
        """Run ready callbacks, due timers and ready I/O until none is left.

        Returns:
            True as soon as ``stop()`` holds (checked before every iteration), else False.
        """
        while True:
            if stop is not None and stop():
                return True
            if self._ready or self._due():
                self.run_once()
                if self._callback_errors:
                    raise self._callback_errors.popleft()
                continue
            events = self._selector.select(0)
            if not events:
                return False
            self.process_events(events)

    def advance_to(self, when: float) -> None:
        """Move the virtual clock forward to ``when`` (never backwards)."""
        if when <= self._now:
            return
        # Guarantee that a timer due at `when` passes _run_once's `when < now + resolution`.
        self._now = when if when + self._clock_resolution > when else math.nextafter(when, math.inf)

    def idle_and_settled(self) -> bool | None:
        """None: a callback is ready after all; False: another thread is busy (the foreground is
        then marked as waiting, so the next settle wakes it); True: everything is settled."""
        activity = self.activity
        with activity.lock:
            if self._ready:
                return None
            if activity.settled():
                return True
            activity.set_foreground_waiting(True)
            return False

    def set_waiting(self) -> None:
        """Mark the foreground as waiting, so the next time everything settles wakes it."""
        with self.activity.lock:
            self.activity.set_foreground_waiting(True)

    def wait_for_events(self, timeout: float | None) -> None:
        """Block on the selector (a real wait, woken by posts from other threads and I/O)."""
        try:
            events = self._selector.select(timeout)
        finally:
            with self.activity.lock:
                self.activity.set_foreground_waiting(False)
        self.process_events(events)

    def wake(self) -> None:
        """Wake a blocked :meth:`wait_for_events` from any thread."""
        with contextlib.suppress(RuntimeError):  # closed
            asyncio.SelectorEventLoop.call_soon_threadsafe(self, _noop)


class _TrackingSelector(selectors.DefaultSelector):
    """The background loop's selector: reports settled/busy around blocking selects."""

    loop: BackgroundLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self.loop
        if loop is None or timeout is not None:
            # timeout 0: work is ready; timeout > 0: a timer is pending (busy until it fires).
            return super().select(timeout)
        activity = loop.activity
        with activity.lock:
            settle = not loop._ready and not loop.blocked
            wake = activity.mark_locked(loop, busy=False) if settle else False
        if wake:
            activity.wake_foreground()
        try:
            return super().select(timeout)
        finally:
            activity.mark(loop, busy=True)


class BackgroundLoop(_TrackedLoop):
    """A background dispatcher's loop (real time), reporting its activity."""

    def __init__(self, activity: Activity) -> None:
        selector = _TrackingSelector()
        self.blocked = False
        super().__init__(activity, selector)
        selector.loop = self
        activity.mark(self, busy=True)

    def _posted_locked(self) -> bool:
        if not self.blocked:
            return self.activity.mark_locked(self, busy=True)
        return False

    def set_blocked(self, blocked: bool) -> None:
        """The loop's thread enters (True) or leaves (False) a kit sync wait."""
        activity = self.activity
        with activity.lock:
            self.blocked = blocked
            wake = activity.mark_locked(self, busy=not blocked)
        if wake:
            activity.wake_foreground()

    def retire(self) -> None:
        """The loop's thread has ended: it no longer counts."""
        self.activity.mark(self, busy=False)
