"""DriverRuntime: run calls, virtual time, background dispatchers, shutdown.

No test here sleeps on real time or polls: waits are run calls on the runtime, and threads are
joined or woken through events the runtime pumps.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import heapq
import socket
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from tether.errors import LifecycleError
from tether.testing import (
    BackgroundDispatcher,
    DriverRuntime,
    ForegroundDispatcher,
    current_dispatcher,
)
from tether.testing._loop import ForegroundLoop
from tether.testing._serve import SERVE_LOOPS


@pytest.fixture
def rt() -> Iterator[DriverRuntime]:
    with DriverRuntime() as runtime:
        yield runtime


def kit_threads() -> list[threading.Thread]:
    """Kit threads alive, but serve()'s parked loop thread (an earlier test's, idle)."""
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith("tether-") and not SERVE_LOOPS.is_parked(t)
    ]


# -- one runtime, one thread --------------------------------------------------------------------


def test_a_second_runtime_is_refused_until_the_first_is_closed() -> None:
    first = DriverRuntime()
    try:
        assert DriverRuntime.current() is first
        with pytest.raises(LifecycleError, match="one runtime at a time"):
            DriverRuntime()
    finally:
        first.close()
    assert DriverRuntime.current() is None
    with DriverRuntime() as second:
        assert DriverRuntime.current() is second


def test_methods_from_another_thread_are_refused(rt: DriverRuntime) -> None:
    errors: list[BaseException] = []

    def other() -> None:
        for call in (rt.run_until_idle, rt.reset_quit, rt.start_background_dispatcher, rt.close):
            try:
                call()
            except LifecycleError as exc:
                errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert len(errors) == 4
    assert "must be called on the thread that created the runtime" in str(errors[0])


def test_the_foreground_is_attached_to_the_test_thread(rt: DriverRuntime) -> None:
    assert isinstance(rt.foreground_dispatcher, ForegroundDispatcher)
    assert current_dispatcher() is rt.foreground_dispatcher
    assert rt.foreground_dispatcher.is_current()
    assert "open" in repr(rt)


def test_closing_detaches_the_foreground_and_is_idempotent() -> None:
    runtime = DriverRuntime()
    runtime.close()
    runtime.close()
    assert current_dispatcher() is None
    assert "closed" in repr(runtime)
    with pytest.raises(LifecycleError, match="the runtime is closed"):
        runtime.run_until_idle()


# -- run_until_idle -----------------------------------------------------------------------------


def test_run_until_idle_runs_posted_work_and_what_it_posts(rt: DriverRuntime) -> None:
    order: list[str] = []
    fg = rt.foreground_dispatcher

    def first() -> None:
        order.append("first")
        fg.post(order.append, "second")

    fg.post(first)
    assert order == []  # nothing runs outside run calls
    rt.run_until_idle()
    assert order == ["first", "second"]


def test_run_until_idle_never_moves_the_clock(rt: DriverRuntime) -> None:
    fired: list[float] = []
    rt.foreground_dispatcher.loop.call_later(5, lambda: fired.append(rt.now()))
    rt.run_until_idle()
    assert fired == []
    assert rt.now() == 0.0


def test_run_until_idle_jumps_to_the_next_timer_when_asked(rt: DriverRuntime) -> None:
    fg = rt.foreground_dispatcher
    bg = rt.start_background_dispatcher()
    fired: list[tuple[str, float]] = []
    fg.loop.call_later(5, lambda: fired.append(("fg", rt.now())))
    fg.loop.call_later(9, lambda: fired.append(("fg", rt.now())))
    bg.post(lambda: bg.loop.call_later(3, lambda: fired.append(("bg", bg.loop.time()))))
    assert rt.run_until_idle(jump_to_next_timer=True) is True
    assert fired == [("bg", 3.0)]  # the earliest timer of any dispatcher, and only it
    assert rt.run_until_idle(jump_to_next_timer=True) is True
    assert rt.run_until_idle(jump_to_next_timer=True) is True
    assert fired == [("bg", 3.0), ("fg", 5.0), ("fg", 9.0)]
    assert rt.run_until_idle(jump_to_next_timer=True) is False  # no timer left
    assert rt.now() == 9.0


def test_a_failing_posted_callback_fails_the_run_call(rt: DriverRuntime) -> None:
    def boom() -> None:
        raise ValueError("callback failed")

    rt.foreground_dispatcher.post(boom)
    with pytest.raises(ValueError, match="callback failed"):
        rt.run_until_idle()
    rt.run_until_idle()  # the runtime stays usable


def test_run_calls_do_not_nest(rt: DriverRuntime) -> None:
    async def nested() -> None:
        rt.run_until_idle()

    with pytest.raises(LifecycleError, match="run calls do not nest"):
        rt.run_to_completion(nested())


def test_the_foreground_loop_cannot_be_run_forever(rt: DriverRuntime) -> None:
    with pytest.raises(LifecycleError, match="only inside DriverRuntime run calls"):
        rt.foreground_dispatcher.loop.run_forever()


# -- virtual time -------------------------------------------------------------------------------


def test_advance_time_runs_timers_in_order_at_their_time(rt: DriverRuntime) -> None:
    loop = rt.foreground_dispatcher.loop
    seen: list[tuple[str, float]] = []
    loop.call_later(3, lambda: seen.append(("b", loop.time())))
    loop.call_later(1, lambda: seen.append(("a", loop.time())))
    loop.call_later(9, lambda: seen.append(("c", loop.time())))
    rt.advance_time(5)
    assert seen == [("a", 1.0), ("b", 3.0)]
    assert rt.now() == 5.0
    rt.advance_time(4)
    assert seen[-1] == ("c", 9.0)


def test_advance_time_refuses_to_go_back(rt: DriverRuntime) -> None:
    with pytest.raises(ValueError, match="cannot go back"):
        rt.advance_time(-1)


def test_a_thirty_second_sleep_takes_microseconds(rt: DriverRuntime) -> None:
    async def wait() -> str:
        await asyncio.sleep(30)
        return "woke"

    started = time.perf_counter()
    assert rt.run_to_completion(wait()) == "woke"
    assert time.perf_counter() - started < 0.5
    assert rt.now() == 30.0


def test_hours_of_periodic_timers_run_in_virtual_time(rt: DriverRuntime) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            await asyncio.sleep(60)
            ticks.append(asyncio.get_running_loop().time())

    rt.foreground_dispatcher.spawn(ticker())
    assert rt.run_with_timeout(3600) is True
    assert len(ticks) == 60
    assert ticks[-1] == 3600.0


def test_background_timers_follow_the_same_virtual_clock(rt: DriverRuntime) -> None:
    bg = rt.start_background_dispatcher()

    async def wait() -> float:
        await asyncio.sleep(30)
        return asyncio.get_running_loop().time()

    started = time.perf_counter()
    assert rt.run_to_completion(bg.spawn(wait())) == 30.0
    assert time.perf_counter() - started < 0.5
    assert rt.now() == 30.0


def test_advance_time_interleaves_foreground_and_background_timers(rt: DriverRuntime) -> None:
    fg = rt.foreground_dispatcher
    first, second = rt.start_background_dispatcher(), rt.start_background_dispatcher()
    seen: list[tuple[str, float]] = []
    lock = threading.Lock()

    def record(name: str, loop: asyncio.AbstractEventLoop) -> None:
        with lock:
            seen.append((name, loop.time()))

    fg.loop.call_later(10, record, "fg", fg.loop)
    fg.loop.call_later(40, record, "fg", fg.loop)
    for bg, delay in ((first, 20), (second, 30)):
        bg.post(lambda bg=bg, delay=delay: bg.loop.call_later(delay, record, bg.name, bg.loop))
    rt.advance_time(25)
    assert seen == [("fg", 10.0), ("background-1", 20.0)]
    assert rt.now() == 25.0
    rt.advance_time(25)
    assert seen[2:] == [("background-2", 30.0), ("fg", 40.0)]


def test_work_a_background_timer_posts_back_runs_before_the_clock_moves_on(
    rt: DriverRuntime,
) -> None:
    fg = rt.foreground_dispatcher
    bg = rt.start_background_dispatcher()
    seen: list[float] = []

    async def relay() -> None:
        while True:
            await asyncio.sleep(10)
            fg.post(lambda: seen.append(rt.now()))

    bg.spawn(relay())
    rt.advance_time(35)
    assert seen == [10.0, 20.0, 30.0]


def test_run_with_timeout_reports_timeout_or_quit(rt: DriverRuntime) -> None:
    loop = rt.foreground_dispatcher.loop
    assert rt.run_with_timeout(2.5) is True
    assert rt.now() == 2.5
    loop.call_later(1, rt.quit)
    assert rt.run_with_timeout(10) is False
    assert rt.now() == 3.5


def test_run_until_returns_whether_the_condition_held(rt: DriverRuntime) -> None:
    flag: list[int] = []
    rt.foreground_dispatcher.loop.call_later(7, flag.append, 1)
    assert rt.run_until(lambda: bool(flag)) is True
    assert rt.now() == 7.0
    assert rt.run_until(lambda: len(flag) > 1, timeout=3) is False
    assert rt.now() == 10.0
    with pytest.raises(ValueError, match="must not be negative"):
        rt.run_until(lambda: True, timeout=-1)


def test_timers_due_exactly_at_the_deadline_still_run(rt: DriverRuntime) -> None:
    fired: list[float] = []
    rt.foreground_dispatcher.loop.call_later(4, lambda: fired.append(rt.now()))
    assert rt.run_with_timeout(4) is True
    assert fired == [4.0]


def test_run_until_quit_and_reset_quit(rt: DriverRuntime) -> None:
    fg = rt.foreground_dispatcher
    fg.loop.call_later(100, rt.quit)
    rt.run()
    assert rt.now() == 100.0
    rt.run()  # quit stays set: returns at once
    assert rt.now() == 100.0
    rt.reset_quit()
    fg.loop.call_later(1, rt.quit)
    rt.run()
    assert rt.now() == 101.0


def test_quit_from_another_thread_wakes_run(rt: DriverRuntime) -> None:
    thread = threading.Thread(target=rt.quit)
    thread.start()
    rt.run()
    thread.join()


# -- run_to_completion --------------------------------------------------------------------------


def test_run_to_completion_accepts_every_kind_of_awaitable(rt: DriverRuntime) -> None:
    fg = rt.foreground_dispatcher

    async def value(x: int) -> int:
        await asyncio.sleep(1)
        return x

    class Custom:
        def __await__(self) -> Generator[Any, None, int]:
            return value(4).__await__()

    assert rt.run_to_completion(value(1)) == 1
    assert rt.run_to_completion(fg.spawn(value(2))) == 2
    future: asyncio.Future[int] = fg.loop.create_future()
    fg.post(future.set_result, 3)
    assert rt.run_to_completion(future) == 3
    assert rt.run_to_completion(Custom()) == 4

    async def at_once(x: int) -> int:
        await asyncio.sleep(2)  # background timers follow the virtual clock too
        return x

    bg = rt.start_background_dispatcher()
    assert rt.run_to_completion(bg.spawn(at_once(5))) == 5


def test_run_to_completion_raises_the_awaitables_error(rt: DriverRuntime) -> None:
    async def fail() -> None:
        raise KeyError("nope")

    with pytest.raises(KeyError, match="nope"):
        rt.run_to_completion(fail())


def test_run_to_completion_refuses_what_it_cannot_wait_for(rt: DriverRuntime) -> None:
    with pytest.raises(TypeError, match="needs an awaitable"):
        rt.run_to_completion(42)  # type: ignore[call-overload]
    other = asyncio.new_event_loop()
    try:
        with pytest.raises(TypeError, match="another loop"):
            rt.run_to_completion(other.create_future())
    finally:
        other.close()


def test_run_to_completion_times_out_in_virtual_time_and_cancels(rt: DriverRuntime) -> None:
    cancelled: list[bool] = []

    async def forever() -> None:
        try:
            await asyncio.sleep(1000)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    started = time.perf_counter()
    with pytest.raises(TimeoutError, match="not done after 5 s"):
        rt.run_to_completion(forever(), timeout=5)
    assert time.perf_counter() - started < 0.5
    assert rt.now() == 5.0
    assert cancelled == [True]


def test_a_timeout_also_bounds_a_real_wait_for_a_busy_thread(rt: DriverRuntime) -> None:
    release = threading.Event()
    bg = rt.start_background_dispatcher()

    async def blocked() -> None:
        await asyncio.get_running_loop().run_in_executor(None, release.wait)

    future = bg.spawn(blocked())
    with pytest.raises(TimeoutError):
        rt.run_to_completion(future, timeout=0.05)
    assert rt.now() == 0.0  # never jumped: a background job was busy all along
    release.set()
    rt.run_to_completion(future)


# -- auto-jump waits for other threads ----------------------------------------------------------


def test_no_jump_while_a_blocking_worker_is_busy(rt: DriverRuntime) -> None:
    fg = rt.foreground_dispatcher
    timer_fired: list[float] = []
    fg.loop.call_later(10, lambda: timer_fired.append(rt.now()))
    seen = threading.Event()

    def work() -> str:
        fg.post(seen.set)  # runs only because the foreground is pumped meanwhile
        seen.wait()
        return "worked"

    assert rt.perform_blocking_work(work) == "worked"
    assert timer_fired == []
    assert rt.now() == 0.0


def test_no_jump_while_a_background_dispatcher_is_busy(rt: DriverRuntime) -> None:
    fg = rt.foreground_dispatcher
    bg = rt.start_background_dispatcher()
    timer_fired: list[float] = []
    fg.loop.call_later(10, lambda: timer_fired.append(rt.now()))
    release = threading.Event()

    async def busy() -> str:
        fg.post(release.set)
        await asyncio.get_running_loop().run_in_executor(None, release.wait)
        return "done"

    assert rt.run_to_completion(bg.spawn(busy())) == "done"
    assert timer_fired == []


def test_jumps_while_the_background_waits_on_foreground_timers(rt: DriverRuntime) -> None:
    fg_loop = rt.foreground_dispatcher.loop
    bg = rt.start_background_dispatcher()

    async def slow_on_foreground() -> float:
        await asyncio.sleep(30)
        return asyncio.get_running_loop().time()

    async def background() -> float:
        hop = asyncio.run_coroutine_threadsafe(slow_on_foreground(), fg_loop)
        return await asyncio.wrap_future(hop)

    started = time.perf_counter()
    assert rt.run_to_completion(bg.spawn(background())) == 30.0
    assert time.perf_counter() - started < 0.5


def test_io_from_another_thread_wakes_the_foreground(rt: DriverRuntime) -> None:
    left, right = socket.socketpair()
    try:

        async def read() -> bytes:
            reader, writer = await asyncio.open_connection(sock=left)
            data = await reader.readexactly(5)
            writer.close()
            return data

        task = rt.foreground_dispatcher.spawn(read())
        rt.run_until_idle()
        bg = rt.start_background_dispatcher()
        bg.post(right.sendall, b"hello")
        assert rt.run_to_completion(task) == b"hello"
    finally:
        right.close()


# -- perform_blocking_work ----------------------------------------------------------------------


def test_perform_blocking_work_returns_and_raises(rt: DriverRuntime) -> None:
    threads: list[str] = []

    def work(a: int, b: int) -> int:
        threads.append(threading.current_thread().name)
        return a + b

    assert rt.perform_blocking_work(work, 2, 3) == 5
    assert threads == ["tether-blocking-work"]

    def fail() -> None:
        raise OSError("device gone")

    with pytest.raises(OSError, match="device gone"):
        rt.perform_blocking_work(fail)
    assert kit_threads() == []


# -- background dispatchers ---------------------------------------------------------------------


def test_background_dispatchers_run_on_their_own_threads(rt: DriverRuntime) -> None:
    first = rt.start_background_dispatcher()
    second = rt.start_background_dispatcher("env")
    assert isinstance(first, BackgroundDispatcher)
    assert (first.name, second.name) == ("background-1", "env")
    assert rt.background_dispatchers == [first, second]

    def where() -> tuple[int, object]:
        return threading.get_ident(), current_dispatcher()

    ident, dispatcher = rt.run_to_completion(second.submit(where))
    assert ident == second.thread.ident != threading.get_ident()
    assert dispatcher is second
    assert not second.is_current()


def test_posting_to_a_background_dispatcher(rt: DriverRuntime) -> None:
    bg = rt.start_background_dispatcher()
    done: concurrent.futures.Future[str] = concurrent.futures.Future()
    bg.post(lambda: done.set_result(threading.current_thread().name))
    assert rt.run_to_completion(done) == "tether-background-1"


def test_foreground_spawn_only_from_the_foreground_thread(rt: DriverRuntime) -> None:
    fg = rt.foreground_dispatcher
    errors: list[BaseException] = []

    async def nothing() -> None:
        pass

    def other() -> None:
        try:
            fg.spawn(nothing())
        except LifecycleError as exc:
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert "must be called on the foreground thread" in str(errors[0])


def test_shutdown_cancels_tasks_joins_threads_and_refuses_run_calls(rt: DriverRuntime) -> None:
    fg = rt.foreground_dispatcher
    bg = rt.start_background_dispatcher()
    unwound: list[str] = []

    async def hang(where: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            unwound.append(where)

    bg_future = bg.spawn(hang("background"))
    fg.spawn(hang("foreground"))
    rt.run_until_idle()
    rt.shutdown_all_dispatchers()
    rt.shutdown_all_dispatchers()  # idempotent
    assert sorted(unwound) == ["background", "foreground"]
    assert bg_future.cancelled()
    assert not bg.thread.is_alive()
    assert kit_threads() == []
    assert bg.shut_down and fg.shut_down
    for call in (rt.run_until_idle, rt.run, rt.start_background_dispatcher):
        with pytest.raises(LifecycleError, match="not allowed after shutdown_all_dispatchers"):
            call()
    with pytest.raises(LifecycleError, match="is shut down"):
        bg.post(print)
    with pytest.raises(LifecycleError, match="is shut down"):
        fg.post(print)

    async def late() -> None:
        pass

    with pytest.raises(LifecycleError, match="is shut down"):
        bg.spawn(late())
    with pytest.raises(LifecycleError, match="is shut down"):
        fg.spawn(late())


def test_no_thread_outlives_the_runtime() -> None:
    with DriverRuntime() as runtime:
        for _ in range(3):
            runtime.start_background_dispatcher()
        runtime.perform_blocking_work(lambda: None)

        async def in_executor() -> int:
            return await asyncio.get_running_loop().run_in_executor(None, lambda: 1)

        assert runtime.run_to_completion(in_executor()) == 1
        assert len(kit_threads()) >= 3
    assert kit_threads() == []


# -- private asyncio API the foreground loop relies on ------------------------------------------


def test_the_private_asyncio_api_we_use_is_there(rt: DriverRuntime) -> None:
    loop = rt.foreground_dispatcher.loop
    assert isinstance(loop, ForegroundLoop)
    for name in ("_run_once", "_asyncgen_firstiter_hook", "_asyncgen_finalizer_hook"):
        assert callable(getattr(loop, name)), name
    assert isinstance(loop._ready, collections.deque)
    assert isinstance(loop._scheduled, list)
    assert isinstance(loop._clock_resolution, float)
    assert isinstance(loop._timer_cancelled_count, int)
    assert loop._thread_id is None  # not running between run calls
    assert callable(asyncio.events._set_running_loop)
    handle = loop.call_later(2, print)
    assert loop._scheduled[0] is handle and handle.when() == 2.0
    handle.cancel()
    assert loop.next_timer() is None  # cancelled heads are dropped, as _run_once does
    later = [loop.call_later(d, print) for d in (3, 1, 2)]
    assert heapq.nsmallest(1, loop._scheduled)[0] is later[1]
    for h in later:
        h.cancel()


def test_inside_run_calls_the_foreground_is_the_running_loop(rt: DriverRuntime) -> None:
    async def probe() -> tuple[object, float, bool]:
        loop = asyncio.get_running_loop()
        return loop, loop.time(), loop.is_running()

    rt.advance_time(12)
    loop, now, running = rt.run_to_completion(probe())
    assert loop is rt.foreground_dispatcher.loop
    assert (now, running) == (12.0, True)
    assert not rt.foreground_dispatcher.loop.is_running()


def test_async_generators_are_finalized_on_shutdown() -> None:
    closed: list[bool] = []

    async def numbers() -> Any:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async def take_one() -> int:
        gen = numbers()
        return await gen.__anext__()

    with DriverRuntime() as runtime:
        assert runtime.run_to_completion(take_one()) == 1
    assert closed == [True]


# -- the parked foreground loop -----------------------------------------------------------------


def test_a_closed_runtimes_clean_loop_serves_the_next_one_from_time_zero() -> None:
    with DriverRuntime() as first:
        first.advance_time(50)
        loop = first.foreground_dispatcher.loop
        loop.call_later(10, print)  # a timer left behind is dropped, not inherited
    with DriverRuntime() as second:
        assert second.foreground_dispatcher.loop is loop
        assert (second.now(), loop.time(), loop.next_timer()) == (0.0, 0.0, None)
        assert second.run_to_completion(asyncio.sleep(3, "ok")) == "ok"
        assert second.now() == 3.0


def test_a_loop_left_with_registered_io_is_closed_not_reused() -> None:
    left, right = socket.socketpair()
    try:
        with DriverRuntime() as first:
            loop = first.foreground_dispatcher.loop
            loop.add_reader(left, print)
        assert loop.is_closed()
        with DriverRuntime() as second:
            assert second.foreground_dispatcher.loop is not loop
    finally:
        left.close()
        right.close()
