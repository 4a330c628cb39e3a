"""The event loops behind the test kit's dispatchers, and the bookkeeping they share.

Theory of operation
-------------------

*One virtual clock* (``Activity.now``). Every loop of a runtime, foreground and background,
reads its ``time()`` from it, so every timer follows virtual time. Only the foreground's run
calls move it, and only when nothing anywhere can make progress without it (see *Activity*).

*Foreground loop* (:class:`ForegroundLoop`). A plain ``asyncio.SelectorEventLoop`` on the
virtual clock. It is never run with ``run_forever``: the runtime pumps it by calling
``_run_once()`` itself, and only when a callback is ready or a timer is due, so ``_run_once``
always polls the selector with timeout 0 and never waits on real time. When a run call has to
wait, it blocks on the loop's selector directly (``wait_for_events``): a callback posted from
another thread (``call_soon_threadsafe``) writes to the loop's self-pipe and wakes it. Closing a
runtime parks its clean foreground loop for the next runtime (making a loop costs a selector and
a socket pair); a loop with anything left registered is closed instead.

*Background loops* (:class:`BackgroundLoop`) run ``run_forever`` on their own threads. When one
has nothing ready, its selector blocks without a timeout (real time never fires its timers) and
reports the loop *settled* together with its next timer's deadline. When the foreground moves the
clock to or past that deadline, it marks the loop busy and wakes it, under one lock, so the
clock cannot move again before the loop has run its due timers and settled once more.

*Activity* (:class:`Activity`). Virtual time may only jump when nothing but timers can make
progress. Every background loop and every helper thread (``perform_blocking_work``, executor
jobs) reports whether it is *settled* to one shared, lock-protected :class:`Activity`:

- a background loop is settled while it blocks in ``select()`` with nothing ready (its next
  timer, if any, is recorded as a deadline), or while its thread is blocked in a kit
  ``sync_call``; a post to it unsettles it at once (the post and the flag change happen under the
  same lock, so there is no gap);
- a helper thread is busy from start until its result has been posted back, except while it
  blocks in a kit ``sync_call``.

The foreground checks ``Activity.settled()`` under that lock together with its own ready queue;
when something is still busy it blocks on its selector and whoever settles wakes it. When all is
settled, it may jump the clock to the earliest deadline: its own next timer or a background one.
A blocked thread counts as busy again from the moment its wait ends (``SyncWait.release``), and
a sync call settles its caller only after posting the call (which marks the target busy), so
there is no gap between "the work is done" and "the waiter runs again" for the clock to slip
through. The test thread blocked in a sync call is not pumping; it moves the clock to background
deadlines itself (``_dispatcher._wait_on_the_test_thread``).

*Sync-call chains* (:data:`SYNC_CHAIN`). A blocking call records a :class:`SyncWait` in a
context variable of the work it posts. Context variables follow asyncio hops (tasks copy them,
``call_soon_threadsafe`` captures them), so when that work, or anything it spawned, posts to a
dispatcher whose thread is blocked in one of the chain's waits, the tracked loops' overridden
``call_soon_threadsafe`` sees it and fails the wait with :class:`~tether.errors.DeadlockError`.

Private asyncio API: the names in :data:`PRIVATE_ASYNCIO`, and no others (the loops' own
selector, executor and wake-up go through public calls). ``tests/testing/test_private_asyncio.py``
checks each one on every supported Python (3.11, 3.12, 3.13).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import contextvars
import heapq
import math
import selectors
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from tether.errors import DeadlockError, LifecycleError

if TYPE_CHECKING:
    from ._dispatcher import Dispatcher

__all__ = [
    "PRIVATE_ASYNCIO",
    "SYNC_CHAIN",
    "Activity",
    "BackgroundLoop",
    "ForegroundLoop",
    "SyncWait",
    "thread_state",
]

T = TypeVar("T")

#: Every private asyncio name the kit relies on: the steps ``run_forever`` takes, which the
#: foreground loop takes itself so that only run calls pump it.
PRIVATE_ASYNCIO: tuple[str, ...] = (
    "BaseEventLoop._run_once",  # one loop iteration
    "BaseEventLoop._ready",  # ready callbacks (a deque of Handle)
    "BaseEventLoop._scheduled",  # the timer heap (TimerHandle, read with when()/cancelled())
    "BaseEventLoop._timer_cancelled_count",  # kept in step when cancelled heads are dropped
    "BaseEventLoop._clock_resolution",  # the slack _run_once gives a due timer
    "BaseEventLoop._thread_id",  # set while running: is_running(), the running-loop checks
    "BaseEventLoop._asyncgens",  # async generators to finalize at shutdown
    "BaseEventLoop._asyncgen_firstiter_hook",  # installed while pumping, as run_forever does
    "BaseEventLoop._asyncgen_finalizer_hook",
    "asyncio.events._set_running_loop",  # makes the pumped loop the running one
)


class _ThreadState(threading.local):
    """Per-thread facts: which dispatcher runs here, and whether this is a tracked helper."""

    dispatcher: Dispatcher | None = None
    helper: Activity | None = None


thread_state = _ThreadState()


@dataclass(eq=False)
class SyncWait:
    """One thread blocked in a kit sync call, waiting for ``target``.

    Whichever thread ends the wait (the call's completion, a deadlock found by a post, a
    shutdown) calls :meth:`release`, which first counts the blocked thread as busy again and
    only then wakes it: there is no moment where the call is over but the waiter still looks
    settled (the clock could jump then).
    """

    blocked: Dispatcher | None
    target: Dispatcher
    what: str
    event: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    active: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: bool = False
    _on_release: Callable[[], None] | None = None

    def settle(self, settle: Callable[[], None], busy_again: Callable[[], None]) -> None:
        """Count the waiting thread as settled (``settle()``), unless the wait has ended
        already; :meth:`release` then calls ``busy_again()``.

        Called after the call was posted (the post marks its target busy first), so there is
        no moment where neither the waiter nor the target counts as busy.
        """
        with self._lock:
            if self._released:
                return
            self._on_release = busy_again
            settle()

    def release(self) -> None:
        """End the wait (once; any thread)."""
        with self._lock:
            if self._released:
                return
            self._released = True
            busy_again = self._on_release
        if busy_again is not None:
            busy_again()
        self.event.set()

    def nudge(self) -> None:
        """Wake the waiting thread without ending the wait (it looks around and waits again)."""
        self.event.set()

    def ended(self) -> bool:
        """True once the wait has ended; else re-arms the event for the next :meth:`nudge`."""
        with self._lock:
            if self._released:
                return True
            self.event.clear()
            return False

    def fail(self, error: BaseException) -> None:
        """End the wait with ``error`` unless it has ended already."""
        with self._lock:
            if not self.active or self._released or self.error is not None:
                return
            self.error = error
        self.release()


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
    """The runtime's virtual clock, and which threads besides the foreground may still do work
    (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        #: the virtual clock every loop of the runtime reads (seconds from the runtime's start)
        self.now = 0.0
        self._unsettled: set[BackgroundLoop] = set()
        self._deadlines: dict[BackgroundLoop, float] = {}
        self._busy_helpers = 0
        self._foreground_waiting = False
        #: the test thread's sync wait, while it blocks in one (see ``_dispatcher._block``)
        self.foreground_wait: SyncWait | None = None
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
            wake = self.mark_locked(loop, busy)
        if wake:
            self.wake_foreground()

    def mark_locked(self, loop: BackgroundLoop, busy: bool, deadline: float | None = None) -> bool:
        """Like :meth:`mark` under a held ``lock``; returns whether to wake the foreground.

        Args:
            deadline: when settling, the loop's next timer (virtual time), if it has one.
        """
        if busy:
            self._unsettled.add(loop)
            self._deadlines.pop(loop, None)
            return False
        self._unsettled.discard(loop)
        if deadline is None:
            self._deadlines.pop(loop, None)
        else:
            self._deadlines[loop] = deadline
        return self._changed()

    def block_foreground(self, wait: SyncWait | None) -> bool:
        """The test thread starts (``wait``) or stops (None) blocking in a sync call; returns
        whether everything else is settled."""
        with self.lock:
            self.foreground_wait = wait
            self._foreground_waiting = wait is not None
            return self.settled()

    def settled_deadline(self) -> tuple[bool, float | None]:
        """Whether everything is settled, and the earliest background deadline; marks the
        foreground as waiting again."""
        with self.lock:
            self._foreground_waiting = True
            return self.settled(), min(self._deadlines.values(), default=None)

    def next_background_timer(self) -> float | None:
        """The earliest deadline of a settled background loop."""
        with self.lock:
            return min(self._deadlines.values(), default=None)

    def advance_to(self, when: float, resolution: float) -> None:
        """Move the clock to ``when`` (never back); wake background loops whose timers fall due.

        Due loops are marked busy under the lock before they are woken, so the clock cannot
        move on before they have run those timers.
        """
        if when <= self.now:
            return
        # Guarantee that a timer due at `when` passes _run_once's `when < now + resolution`.
        now = when if when + resolution > when else math.nextafter(when, math.inf)
        with self.lock:
            self.now = now
            due = [loop for loop, at in self._deadlines.items() if at < now + resolution]
            for loop in due:
                self.mark_locked(loop, busy=True)
        for loop in due:
            loop.wake()

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
    """Shared by both loops: the virtual clock, deadlock checks on posts, tracked executor
    jobs."""

    _ready: deque[asyncio.Handle]
    _scheduled: list[asyncio.TimerHandle]
    _clock_resolution: float
    _timer_cancelled_count: int
    _thread_id: int | None

    def __init__(self, activity: Activity, selector: selectors.BaseSelector) -> None:
        self.activity = activity
        self.owner: Dispatcher | None = None
        #: the selector given to asyncio (kept here, not read back from the loop)
        self.kit_selector = selector
        self.kit_executor: concurrent.futures.Executor | None = None
        super().__init__(selector)

    def set_default_executor(self, executor: Any) -> None:
        self.kit_executor = executor
        super().set_default_executor(executor)

    def time(self) -> float:
        """The runtime's virtual clock (seconds); moves only when the runtime moves it."""
        return self.activity.now

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
        if executor is None:
            executor = self.kit_executor
            if executor is None:  # made on first use: most tests never need one
                executor = concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix="tether-executor"
                )
                self.set_default_executor(executor)
        activity = self.activity
        activity.helper_started()
        try:
            job = executor.submit(activity.run_helper, func, *args)
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
        while scheduled and scheduled[0].cancelled():
            self._timer_cancelled_count -= 1
            heapq.heappop(scheduled)
        return scheduled[0].when() if scheduled else None

    def watches_nothing(self) -> bool:
        """No file descriptor is registered but the loop's own self-pipe (nothing can wake it
        from outside but a post)."""
        return len(self.kit_selector.get_map()) <= 1

    def run_once(self) -> None:
        cast_any: Any = self
        cast_any._run_once()

    def wake(self) -> None:
        """Wake the loop's blocked ``select()`` from any thread (no deadlock or busy checks)."""
        with contextlib.suppress(RuntimeError):  # closed
            asyncio.SelectorEventLoop.call_soon_threadsafe(self, _noop)


class ForegroundLoop(_TrackedLoop):
    """The foreground dispatcher's loop: virtual clock, pumped by the runtime only.

    Make one with :meth:`acquire` and give it back with :meth:`release`: a clean loop is parked
    and reused by the next runtime.
    """

    def __init__(self, activity: Activity) -> None:
        super().__init__(activity, selectors.DefaultSelector())
        #: False once the loop ran its async-generator or executor shutdown (asyncio keeps
        #: flags for those): such a loop is closed, not parked for reuse
        self.reusable = True
        self._callback_errors: deque[BaseException] = deque()
        self.set_exception_handler(self._on_exception)

    @classmethod
    def acquire(cls, activity: Activity) -> ForegroundLoop:
        """A foreground loop for a new runtime: the parked one if there is one."""
        global _parked
        with _parked_lock:
            loop, _parked = _parked, None
        if loop is None:
            return cls(activity)
        loop.activity = activity
        return loop

    def release(self) -> None:
        """The runtime is done with this loop: park it for the next runtime if it is clean
        (nothing registered but its self-pipe, nothing ready), else close it."""
        global _parked
        cast_any: Any = self
        self.owner = None
        self._scheduled.clear()
        self._timer_cancelled_count = 0
        self._callback_errors.clear()
        clean = (
            not self._ready
            and not self.is_closed()
            and self.reusable
            and len(self.kit_selector.get_map()) == 1
            and not cast_any._asyncgens
            and self.kit_executor is None
            and self.get_task_factory() is None
            and not self.get_debug()
        )
        if clean:
            self.set_exception_handler(self._on_exception)
            self.activity = _IDLE_ACTIVITY
            with _parked_lock:
                if _parked is None:
                    _parked = self
                    return
        self.close()

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

    def enter(self) -> tuple[Any, ...]:
        """Make this the running loop of the calling thread, as ``run_forever`` does.

        Returns:
            What :meth:`leave` needs to restore (the thread's async generator hooks).
        """
        if self._thread_id is not None:
            raise LifecycleError(
                "a DriverRuntime run call was made from inside a foreground callback; "
                "run calls do not nest"
            )
        if self.is_closed():
            raise RuntimeError("Event loop is closed")
        old_hooks = sys.get_asyncgen_hooks()
        cast_any: Any = self
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(
            firstiter=cast_any._asyncgen_firstiter_hook,
            finalizer=cast_any._asyncgen_finalizer_hook,
        )
        asyncio.events._set_running_loop(self)
        return tuple(old_hooks)

    def leave(self, old_hooks: tuple[Any, ...]) -> None:
        """Undo :meth:`enter`."""
        asyncio.events._set_running_loop(None)
        self._thread_id = None
        sys.set_asyncgen_hooks(*old_hooks)

    def _due(self) -> bool:
        when = self.next_timer()
        # The same test _run_once applies, so a "due" timer always runs.
        return when is not None and when < self.activity.now + self._clock_resolution

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
            if not self.kit_selector.select(0):
                return False
            # Ready I/O: let _run_once poll and process it (it polls with timeout 0 while a
            # callback is ready). Processing the events here as well would queue each
            # level-triggered reader twice.
            self.call_soon(_noop)

    def next_deadline(self) -> float | None:
        """The earliest timer of any loop: this one's or a settled background loop's."""
        own = self.next_timer()
        other = self.activity.next_background_timer()
        if own is None or other is None:
            return own if other is None else other
        return min(own, other)

    def advance_to(self, when: float) -> None:
        """Move the virtual clock forward to ``when`` (never backwards)."""
        self.activity.advance_to(when, self._clock_resolution)

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
        """Block on the selector (a real wait, woken by posts from other threads and I/O).

        The events stay pending (level-triggered): the next :meth:`dispatch` processes them.
        """
        try:
            self.kit_selector.select(timeout)
        finally:
            with self.activity.lock:
                self.activity.set_foreground_waiting(False)


_IDLE_ACTIVITY = Activity()  # a parked loop's: no runtime, clock at 0
_parked_lock = threading.Lock()
_parked: ForegroundLoop | None = None


@atexit.register
def _close_parked() -> None:
    global _parked
    with _parked_lock:
        loop, _parked = _parked, None
    if loop is not None:
        loop.close()


class _TrackingSelector(selectors.DefaultSelector):
    """The background loop's selector: settles the loop while it would wait, and waits for the
    foreground to move the clock instead of for real time."""

    loop: BackgroundLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self.loop
        if loop is None or timeout == 0:
            return super().select(timeout)
        # Nothing is ready; timeout > 0 means a timer is pending, in virtual time. Only the
        # foreground moves the clock, and it wakes this loop when the timer falls due.
        scheduled = loop._scheduled
        deadline = scheduled[0].when() if scheduled else None
        activity = loop.activity
        if deadline is not None and deadline < activity.now + loop._clock_resolution:
            return super().select(0)  # due already by _run_once's own test: run it next
        with activity.lock:
            settle = not loop._ready and not loop.blocked
            wake = activity.mark_locked(loop, busy=False, deadline=deadline) if settle else False
        if wake:
            activity.wake_foreground()
        try:
            return super().select(None)
        finally:
            activity.mark(loop, busy=True)


class BackgroundLoop(_TrackedLoop):
    """A background dispatcher's loop (on the runtime's virtual clock), reporting its
    activity."""

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
