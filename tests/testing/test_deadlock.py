"""Run calls on a runtime where nothing can ever run again raise DeadlockError, not hang."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

from tether.errors import DeadlockError
from tether.testing import DriverRuntime


@pytest.fixture
def rt() -> Iterator[DriverRuntime]:
    with DriverRuntime() as runtime:
        yield runtime


def test_run_to_completion_of_a_task_nothing_can_finish(rt: DriverRuntime) -> None:
    unwound: list[str] = []

    async def wait_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            unwound.append("cancelled")

    with pytest.raises(DeadlockError) as info:
        rt.run_to_completion(wait_forever())
    message = str(info.value)
    assert message.startswith("run_to_completion(")
    assert "wait_forever" in message and "suspended in wait()" in message
    assert "nothing can ever run again" in message
    assert unwound == ["cancelled"]  # the task made here was cancelled and unwound


def test_run_without_quit_and_run_until_a_condition_nothing_changes(rt: DriverRuntime) -> None:
    with pytest.raises(DeadlockError, match=r"^quit\(\): nothing can ever run again"):
        rt.run()

    def never() -> bool:
        return False

    with pytest.raises(DeadlockError, match=r"run_until\(.*never\): nothing can ever run"):
        rt.run_until(never)


def test_a_future_of_an_idle_background_dispatcher_is_a_deadlock(rt: DriverRuntime) -> None:
    background = rt.start_background_dispatcher()

    async def wait_forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(DeadlockError, match=r"run_to_completion\(<Future"):
        rt.run_to_completion(background.spawn(wait_forever()))


def test_timers_anywhere_are_not_a_deadlock(rt: DriverRuntime) -> None:
    background = rt.start_background_dispatcher()

    async def later() -> str:
        await asyncio.sleep(3600)
        return "done"

    assert rt.run_to_completion(background.spawn(later())) == "done"
    rt.foreground_dispatcher.loop.call_later(60, rt.quit)
    rt.run()
    assert rt.now() == 3660


def test_a_watched_socket_is_not_a_deadlock() -> None:
    ours, theirs = socket.socketpair()
    go = threading.Event()

    def peer() -> None:  # started before the runtime: the kit does not count it
        go.wait()
        theirs.send(b"x")

    thread = threading.Thread(target=peer)
    thread.start()
    try:
        with DriverRuntime() as rt:
            loop = rt.foreground_dispatcher.loop
            got: asyncio.Future[bytes] = loop.create_future()
            loop.add_reader(ours, lambda: got.set_result(ours.recv(1)))
            loop.call_soon(go.set)
            assert rt.run_to_completion(got) == b"x"
            loop.remove_reader(ours)
    finally:
        go.set()
        thread.join()
        ours.close()
        theirs.close()


def test_a_thread_started_during_the_test_may_still_post(rt: DriverRuntime) -> None:
    go = threading.Event()
    loop = rt.foreground_dispatcher.loop
    done: asyncio.Future[str] = loop.create_future()

    def worker() -> None:
        go.wait()
        loop.call_soon_threadsafe(done.set_result, "posted")

    thread = threading.Thread(target=worker)
    thread.start()
    loop.call_soon(go.set)
    assert rt.run_to_completion(done) == "posted"
    thread.join()


def test_blocking_work_is_not_a_deadlock(rt: DriverRuntime) -> None:
    loop = rt.foreground_dispatcher.loop

    async def offload() -> int:
        return await loop.run_in_executor(None, sum, [1, 2, 3])

    assert rt.run_to_completion(offload()) == 6
    assert rt.perform_blocking_work(lambda: 7) == 7


def test_serves_parked_loop_thread_does_not_hide_a_deadlock() -> None:
    """The parked thread appears after the runtime was made, but can never post to it."""
    from tether.drivers.power import MockPower
    from tether.testing import serve
    from tether.testing._serve import SERVE_LOOPS

    SERVE_LOOPS.take().close()  # no parked thread yet: the runtime must not know it
    with DriverRuntime() as runtime:
        with serve(MockPower()) as power:
            power.on()  # type: ignore[attr-defined]
        assert SERVE_LOOPS.parked is not None

        async def wait_forever() -> None:
            await asyncio.Event().wait()

        with pytest.raises(DeadlockError):
            runtime.run_to_completion(wait_forever())
