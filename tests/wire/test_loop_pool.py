"""``LoopPool``: a loop thread is parked only when nothing is left on its loop, and then reused."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator

import pytest

from tether.wire import DEFAULT_SPIN, LoopPool
from tether.wire._loop_pool import PRIVATE_ASYNCIO, ParkingLoopThread, loop_leftovers
from tether.wire._spinning import NATIVE

pytestmark = pytest.mark.skipif(not NATIVE, reason="only a SpinningSelector loop is parked")


@pytest.fixture
def pool() -> Iterator[LoopPool]:
    loops = LoopPool("tether-test-pool", spin=DEFAULT_SPIN)
    yield loops
    loops.close()


def one_round(loop_thread: ParkingLoopThread, work: Callable[[], Awaitable[object]]) -> object:
    """Run ``work`` on the loop as serve() does (submit, start), then close the round."""
    done = loop_thread.submit(_call(work))
    loop_thread.start()
    result = done.result(timeout=10)
    loop_thread.close()
    return result


async def _call(work: Callable[[], Awaitable[object]]) -> object:
    return await work()


async def thread_ident() -> int:
    return threading.get_ident()


def test_each_private_asyncio_name_exists_and_a_new_loop_has_nothing_left(
    pool: LoopPool,
) -> None:
    loop_thread = pool.take()
    for name in PRIVATE_ASYNCIO:
        assert hasattr(loop_thread.loop, name), name
    assert loop_leftovers(loop_thread) == []
    loop_thread.close()


def test_a_clean_loop_is_parked_and_the_next_take_reuses_it(pool: LoopPool) -> None:
    first = pool.take()
    ident = one_round(first, thread_ident)
    assert pool.parked is first and not first.loop.is_closed()
    second = pool.take()
    assert second is first and pool.parked is None
    assert one_round(second, thread_ident) == ident  # same thread, same loop
    assert pool.parked is first


async def leave_a_task() -> None:
    asyncio.get_running_loop().create_task(asyncio.Event().wait())


async def leave_a_timer() -> None:
    asyncio.get_running_loop().call_later(3600, print, "stale")


async def leave_a_cancelled_timer() -> None:
    asyncio.get_running_loop().call_later(3600, print, "stale").cancel()


_kept: list[socket.socket] = []


async def leave_a_reader() -> None:
    ours, theirs = socket.socketpair()
    _kept.extend((ours, theirs))
    asyncio.get_running_loop().add_reader(ours, print, "stale")


async def leave_executor_work() -> None:
    asyncio.get_running_loop().run_in_executor(None, threading.Event().wait, 0.2)


async def replace_the_default_executor() -> None:
    asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor(1))


async def shut_the_default_executor_down() -> None:
    await asyncio.get_running_loop().shutdown_default_executor()


async def leave_a_callback_that_keeps_coming_back() -> None:
    loop = asyncio.get_running_loop()

    def again() -> None:
        loop.call_soon(again)

    loop.call_soon(again)


async def leave_an_async_generator() -> None:
    async def numbers() -> object:
        yield 1
        yield 2

    generator = numbers()
    await generator.__anext__()  # type: ignore[attr-defined]
    _generators.append(generator)


_generators: list[object] = []


async def change_the_exception_handler() -> None:
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: None)


@pytest.mark.parametrize(
    ("leave", "leftover"),
    [
        (leave_a_task, "1 task(s)"),
        (leave_a_timer, "1 timer(s)"),
        (leave_a_reader, "readers or writers on fds"),
        (leave_executor_work, "executor work"),
        (replace_the_default_executor, "another default executor"),
        (shut_the_default_executor_down, "a shut-down executor"),
        (leave_a_callback_that_keeps_coming_back, "ready callback(s)"),
        (leave_an_async_generator, "async generators to finalize"),
        (change_the_exception_handler, "changed loop settings"),
    ],
)
def test_a_loop_with_something_left_is_closed_not_reused(
    pool: LoopPool,
    leave: Callable[[], Awaitable[None]],
    leftover: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop_thread = pool.take()
    found: list[list[str]] = []

    def spy(each: ParkingLoopThread) -> list[str]:
        found.append(loop_leftovers(each))
        return found[-1]

    with monkeypatch.context() as patch:
        patch.setattr("tether.wire._loop_pool.loop_leftovers", spy)
        one_round(loop_thread, leave)
    assert found and any(leftover in each for each in found[-1]), found
    assert pool.parked is None
    assert loop_thread.loop.is_closed() and not loop_thread._thread.is_alive()
    fresh = pool.take()
    assert fresh is not loop_thread and loop_leftovers(fresh) == []
    one_round(fresh, thread_ident)
    assert pool.parked is fresh
    for sock in _kept:
        sock.close()
    _kept.clear()


def test_finished_executor_work_does_not_stop_reuse_and_the_idle_workers_are_kept(
    pool: LoopPool,
) -> None:
    loop_thread = pool.take()

    async def work_in_a_thread() -> str:
        return await asyncio.to_thread(lambda: threading.current_thread().name)

    worker_name = one_round(loop_thread, work_in_a_thread)
    assert pool.parked is loop_thread
    worker = next(t for t in threading.enumerate() if t.name == worker_name)
    assert pool.is_parked(worker) and pool.is_parked(loop_thread._thread)
    assert not pool.is_parked(threading.current_thread())
    assert one_round(pool.take(), work_in_a_thread) == worker_name  # the same idle worker


def test_a_cancelled_timer_is_inert_and_does_not_stop_reuse(pool: LoopPool) -> None:
    loop_thread = pool.take()
    one_round(loop_thread, leave_a_cancelled_timer)
    assert pool.parked is loop_thread


def test_a_post_to_a_parked_loop_makes_the_next_take_close_it(pool: LoopPool) -> None:
    loop_thread = pool.take()
    one_round(loop_thread, thread_ident)
    ran: list[str] = []
    loop_thread.loop.call_soon_threadsafe(ran.append, "stale")  # a stale reference posts
    fresh = pool.take()
    assert fresh is not loop_thread and loop_thread.loop.is_closed()
    one_round(fresh, thread_ident)
    assert ran == []


def test_two_loops_taken_at_once_are_different_and_only_one_is_parked(pool: LoopPool) -> None:
    first, second = pool.take(), pool.take()
    assert first is not second
    assert one_round(first, thread_ident) != one_round(second, thread_ident)
    assert pool.parked is first
    assert second.loop.is_closed() and not second._thread.is_alive()


def test_the_last_coroutines_failure_propagates_and_the_clean_loop_is_parked(
    pool: LoopPool,
) -> None:
    loop_thread = pool.take()
    loop_thread.submit(thread_ident())
    loop_thread.start()

    async def teardown() -> None:
        raise OSError("device gone")

    with pytest.raises(OSError, match="device gone"):
        loop_thread.close(teardown())
    assert pool.parked is loop_thread


def test_a_loop_taken_and_closed_before_start_is_ended(pool: LoopPool) -> None:
    loop_thread = pool.take()
    one_round(loop_thread, thread_ident)
    again = pool.take()
    ran: list[str] = []

    again.loop.call_soon_threadsafe(ran.append, "ran")  # as submit() would
    again.close()
    assert ran == [] and again.loop.is_closed() and not again._thread.is_alive()
    assert pool.parked is None


def test_a_closed_pool_parks_nothing(pool: LoopPool) -> None:
    loop_thread = pool.take()
    one_round(loop_thread, thread_ident)
    pool.close()
    assert pool.parked is None and loop_thread.loop.is_closed()
    other = pool.take()
    one_round(other, thread_ident)
    assert pool.parked is None and other.loop.is_closed()


def test_at_exit_the_parked_thread_is_ended_without_a_warning_or_a_wait() -> None:
    script = (
        "from tether.testing import serve\n"
        "from tether.drivers.power import MockPower\n"
        "from tether.testing._serve import SERVE_LOOPS\n"
        "with serve(MockPower()) as power:\n"
        "    power.on()\n"
        "assert SERVE_LOOPS.parked is not None\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_drops_the_parked_loop_and_leaves_the_parents_working(
    pool: LoopPool,
) -> None:
    parked = pool.take()
    one_round(parked, thread_ident)
    pid = os.fork()
    if pid == 0:  # the at-fork hook has run: report what the child's pool holds
        os._exit(0 if pool.parked is None and parked.loop.is_closed() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # Started with nothing to do, the parent's loop blocks in epoll; a submit wakes it only
    # if its wake-up socket is still registered in the (shared) epoll instance.
    again = pool.take()
    assert again is parked
    again.start()
    assert again.submit(thread_ident()).result(timeout=10) == parked._thread.ident
    again.close()


def test_a_loop_a_driver_stopped_is_not_parked_behind_its_session(pool: LoopPool) -> None:
    loop_thread = pool.take()

    async def stop_the_loop() -> None:
        asyncio.get_running_loop().stop()

    loop_thread.submit(stop_the_loop())
    loop_thread.start()
    loop_thread._thread.join(10)  # the loop ended mid-session, as a LoopThread's would
    assert pool.parked is None and loop_thread.loop.is_closed()
