"""DispatcherBound: construction, calls and destruction on the object's dispatcher; deadlocks."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from tether.driver import Interface, ServiceDirectory
from tether.errors import DeadlockError, LifecycleError
from tether.testing import BackgroundDispatcher, DispatcherBound, DriverRuntime


class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start
        self.thread = threading.get_ident()
        self.closed = False

    def add(self, n: int) -> int:
        self.value += n
        return self.value

    async def add_later(self, n: int) -> int:
        await asyncio.sleep(0)
        return self.add(n)

    def close(self) -> None:
        self.closed = True


class AsyncClosing(Counter):
    async def close(self) -> None:  # type: ignore[override]
        await asyncio.sleep(0)
        self.closed = True


@pytest.fixture
def rt() -> Iterator[DriverRuntime]:
    with DriverRuntime() as runtime:
        yield runtime


@pytest.fixture
def bg(rt: DriverRuntime) -> BackgroundDispatcher:
    return rt.start_background_dispatcher()


def test_constructed_and_called_on_its_dispatcher(
    rt: DriverRuntime, bg: BackgroundDispatcher
) -> None:
    bound = DispatcherBound(bg, Counter, 10)
    assert bound.dispatcher is bg
    assert bound.sync_call(lambda c: c.thread) == bg.thread.ident
    assert bound.sync_call(lambda c: threading.get_ident()) == bg.thread.ident
    assert bound.sync_call(Counter.add, 5) == 15
    assert bound.sync_call("add", 1) == 16
    assert rt.run_to_completion(bound.async_call(Counter.add, 4)) == 20
    assert rt.run_to_completion(bound.async_call("add_later", 1)) == 21  # awaited there
    assert bound.sync_call(Counter.add_later, 1) == 22
    assert "Counter" in repr(bound) and "live" in repr(bound)


def test_calls_run_in_the_order_they_were_made(rt: DriverRuntime, bg: BackgroundDispatcher) -> None:
    bound = DispatcherBound(bg, list)
    futures = [bound.async_call(list.append, i) for i in range(50)]
    for future in futures:
        rt.run_to_completion(future)
    assert bound.sync_call(list.copy) == list(range(50))


def test_foreground_objects_are_reached_with_async_call(rt: DriverRuntime) -> None:
    bound = DispatcherBound(rt.foreground_dispatcher, Counter)
    future = bound.async_call(Counter.add, 2)
    assert not future.done()  # runs only when the foreground is pumped
    assert rt.run_to_completion(future) == 2


def test_errors_reach_the_caller(rt: DriverRuntime, bg: BackgroundDispatcher) -> None:
    bound = DispatcherBound(bg, Counter)
    with pytest.raises(TypeError):
        bound.sync_call(Counter.add, "x")
    with pytest.raises(TypeError):
        rt.run_to_completion(bound.async_call(Counter.add, "x"))


def test_a_failing_factory_fails_every_call(rt: DriverRuntime, bg: BackgroundDispatcher) -> None:
    def broken() -> Counter:
        raise RuntimeError("no device")

    bound = DispatcherBound(bg, broken)
    with pytest.raises(RuntimeError, match="no device"):
        rt.run_to_completion(bound.constructed)
    with pytest.raises(LifecycleError, match="the factory raised") as info:
        bound.sync_call(Counter.add, 1)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_destroy_closes_on_the_dispatcher_and_later_calls_fail(
    rt: DriverRuntime, bg: BackgroundDispatcher
) -> None:
    bound = DispatcherBound(bg, Counter)
    probe = bound.sync_call(lambda c: c)  # a reference, for the test only
    rt.run_to_completion(bound.destroy())
    assert probe.closed
    assert rt.run_to_completion(bound.destroy()) is None  # twice: no-op
    assert "destroyed" in repr(bound)
    for call in (bound.sync_call, bound.async_call):
        with pytest.raises(LifecycleError, match="was destroyed"):
            call(Counter.add, 1)


def test_async_close_is_awaited_on_destroy(rt: DriverRuntime, bg: BackgroundDispatcher) -> None:
    bound = DispatcherBound(bg, AsyncClosing)
    probe = bound.sync_call(lambda c: c)
    rt.run_to_completion(bound.destroy())
    assert probe.closed


def test_context_manager_destroys_and_waits(rt: DriverRuntime, bg: BackgroundDispatcher) -> None:
    with DispatcherBound(bg, Counter) as bound:
        probe = bound.sync_call(lambda c: c)
    assert probe.closed
    with DispatcherBound(rt.foreground_dispatcher, AsyncClosing) as on_fg:
        fg_probe = rt.run_to_completion(on_fg.async_call(lambda c: c))
    assert fg_probe.closed  # the foreground was pumped to await close()
    on_fg.close()  # again: no-op


def test_cancelling_an_async_call_cancels_its_task(
    rt: DriverRuntime, bg: BackgroundDispatcher
) -> None:
    started = threading.Event()
    cancelled = threading.Event()

    async def hang(_: Counter) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    bound = DispatcherBound(bg, Counter)
    future = bound.async_call(hang)
    rt.perform_blocking_work(started.wait)
    assert future.cancel()
    rt.perform_blocking_work(cancelled.wait)


def test_after_shutdown_calls_run_synchronously_on_the_caller(rt: DriverRuntime) -> None:
    bg = rt.start_background_dispatcher()
    bound = DispatcherBound(bg, Counter)
    rt.shutdown_all_dispatchers()
    assert bound.sync_call(lambda c: threading.get_ident()) == threading.get_ident()
    assert bound.async_call(Counter.add, 3).result() == 3
    with pytest.raises(LifecycleError, match="cannot await"):
        bound.sync_call(Counter.add_later, 1)
    probe = bound.sync_call(lambda c: c)
    bound.close()
    assert probe.closed


# -- deadlocks ----------------------------------------------------------------------------------


def test_sync_call_to_the_foreground_from_the_test_thread(rt: DriverRuntime) -> None:
    bound = DispatcherBound(rt.foreground_dispatcher, Counter)
    with pytest.raises(DeadlockError, match="called on the thread of dispatcher 'foreground'"):
        bound.sync_call(Counter.add, 1)


def test_sync_call_from_the_targets_own_thread(rt: DriverRuntime, bg: BackgroundDispatcher) -> None:
    bound = DispatcherBound(bg, Counter)
    with pytest.raises(DeadlockError, match="background-1"):
        bound.sync_call(lambda c: bound.sync_call(Counter.add, 1))


def test_sync_call_to_a_background_that_waits_on_the_foreground(
    rt: DriverRuntime, bg: BackgroundDispatcher
) -> None:
    on_fg = DispatcherBound(rt.foreground_dispatcher, Counter)
    on_bg = DispatcherBound(bg, Counter)
    errors: list[BaseException] = []

    def on_foreground(_: Counter) -> int:
        # The background's thread is blocked right now in the sync_call that runs this.
        try:
            on_bg.sync_call(Counter.add, 1)
        except DeadlockError as exc:
            errors.append(exc)
        return 7

    result = on_bg.async_call(lambda _: on_fg.sync_call(on_foreground))
    assert rt.run_to_completion(result) == 7
    assert "wait chain: background-1 -> foreground" in str(errors[0])


def test_a_transitive_wait_chain_is_detected(rt: DriverRuntime) -> None:
    first = DispatcherBound(rt.start_background_dispatcher(), Counter)
    second = DispatcherBound(rt.start_background_dispatcher(), Counter)
    on_fg = DispatcherBound(rt.foreground_dispatcher, Counter)
    errors: list[BaseException] = []

    def on_foreground(_: Counter) -> None:
        try:
            first.sync_call(Counter.add, 1)
        except DeadlockError as exc:
            errors.append(exc)

    chain = first.async_call(lambda _: second.sync_call(lambda _: on_fg.sync_call(on_foreground)))
    rt.run_to_completion(chain)
    assert "background-1 -> background-2 -> foreground" in str(errors[0])


class Echo(Interface):
    name = "test.echo"

    async def echo(self, value: int) -> int:
        raise NotImplementedError


class EchoImpl:
    async def echo(self, value: int) -> int:
        return value


def test_a_call_that_needs_the_blocked_foreground_fails_at_once(
    rt: DriverRuntime, bg: BackgroundDispatcher
) -> None:
    directory = ServiceDirectory()
    directory.add_service(Echo, EchoImpl(), loop=rt.foreground_dispatcher.loop)
    proxy = directory.connect(Echo)
    finished: list[int] = []

    async def use_foreground_service(_: Counter) -> None:
        finished.append(await proxy.echo(5))

    bound = DispatcherBound(bg, Counter)
    with pytest.raises(DeadlockError, match="whose thread is blocked waiting for that same call"):
        bound.sync_call(use_foreground_service)
    # The work it posted is still queued; pumping the foreground lets the call finish.
    assert rt.run_until(lambda: finished == [5])


def test_a_helper_thread_may_sync_call_the_pumped_foreground(rt: DriverRuntime) -> None:
    on_fg = DispatcherBound(rt.foreground_dispatcher, Counter)
    assert rt.perform_blocking_work(on_fg.sync_call, Counter.add, 9) == 9


def test_a_sync_call_from_the_foreground_into_the_background_is_fine(
    rt: DriverRuntime, bg: BackgroundDispatcher
) -> None:
    on_bg = DispatcherBound(bg, Counter)

    async def from_foreground() -> int:
        return on_bg.sync_call(Counter.add, 2)  # blocks the foreground thread briefly

    assert rt.run_to_completion(from_foreground()) == 2


class Sleeper:
    async def nap(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return asyncio.get_running_loop().time()


def test_a_sync_call_from_the_test_thread_waits_in_virtual_time(
    rt: DriverRuntime, bg: BackgroundDispatcher
) -> None:
    sleeper = DispatcherBound(bg, Sleeper)
    assert sleeper.sync_call(Sleeper.nap, 30) == 30.0  # the clock jumped for the call's timer
    assert rt.now() == 30.0


def test_a_sync_call_that_needs_a_foreground_timer_first_raises(
    rt: DriverRuntime, bg: BackgroundDispatcher
) -> None:
    fired: list[float] = []
    rt.foreground_dispatcher.loop.call_later(10, lambda: fired.append(rt.now()))
    sleeper = DispatcherBound(bg, Sleeper)
    with pytest.raises(DeadlockError, match=r"a foreground timer is due first \(t=10s\)"):
        sleeper.sync_call(Sleeper.nap, 30)
    assert rt.now() == 0.0
    assert rt.run_to_completion(sleeper.async_call(Sleeper.nap, 30)) == 30.0
    assert fired == [10.0]
