"""``LoopThread``: a real, named thread that is gone once closed; a final coroutine at close."""

from __future__ import annotations

import threading

import pytest

from tether.errors import LifecycleError
from tether.wire import LoopThread


def names() -> list[str]:
    return [thread.name for thread in threading.enumerate()]


def test_the_thread_is_named_while_it_runs_and_gone_after_close() -> None:
    loop_thread = LoopThread("tether-test-loop")

    async def where() -> str:
        return threading.current_thread().name

    assert loop_thread.run(where()) == "tether-test-loop"
    assert "tether-test-loop" in names()
    loop_thread.close()
    loop_thread.close()  # twice is fine
    assert "tether-test-loop" not in names()


def test_close_runs_a_last_coroutine_and_propagates_its_failure() -> None:
    loop_thread = LoopThread("tether-test-loop")
    ran = threading.Event()

    async def teardown() -> None:
        ran.set()
        raise OSError("device gone")

    with pytest.raises(OSError, match="device gone"):
        loop_thread.close(teardown())
    assert ran.is_set()
    assert loop_thread.loop.is_closed()
    assert "tether-test-loop" not in names()


def test_close_with_a_last_coroutine_after_close_is_refused() -> None:
    loop_thread = LoopThread("tether-test-loop")
    loop_thread.close()

    async def teardown() -> None:
        raise AssertionError("must not run")

    with pytest.raises(LifecycleError, match="tether-test-loop is already closed"):
        loop_thread.close(teardown())


def test_work_submitted_before_start_runs_once_started() -> None:
    loop_thread = LoopThread("tether-test-late", start=False)
    assert "tether-test-late" not in names()

    async def where() -> str:
        return threading.current_thread().name

    first = loop_thread.submit(where())
    loop_thread.start()
    assert first.result(timeout=10) == "tether-test-late"
    loop_thread.close()
    assert "tether-test-late" not in names()


def test_a_loop_thread_never_started_closes_cleanly() -> None:
    loop_thread = LoopThread("tether-test-unstarted", start=False)
    ran: list[str] = []

    async def last() -> None:
        ran.append("last")

    loop_thread.close(last())  # no thread to join, the coroutine is dropped unawaited
    assert ran == []
    assert loop_thread.loop.is_closed()
    loop_thread.close()  # twice is fine


def test_starting_twice_is_refused_and_the_thread_still_closes() -> None:
    loop_thread = LoopThread("tether-test-twice")
    with pytest.raises(LifecycleError, match="started already"):
        loop_thread.start()
    loop_thread.close()
    assert "tether-test-twice" not in names()
