"""Each private asyncio name the test kit relies on, checked on this Python (the suite runs on
3.11, 3.12 and 3.13): the list lives in one place, ``tether.testing._loop.PRIVATE_ASYNCIO``."""

from __future__ import annotations

import asyncio
import collections
import heapq
import inspect
import sys
import threading
import weakref
from collections.abc import Iterator

import pytest

from tether.testing import DriverRuntime
from tether.testing._loop import PRIVATE_ASYNCIO


@pytest.fixture
def loop() -> Iterator[asyncio.SelectorEventLoop]:
    plain = asyncio.SelectorEventLoop()
    yield plain
    plain.close()


def resolve(name: str, loop: asyncio.AbstractEventLoop) -> object:
    owner, _, attribute = name.rpartition(".")
    if owner == "BaseEventLoop":
        return getattr(loop, attribute)
    module = sys.modules[owner]
    return getattr(module, attribute)


def test_the_list_is_small() -> None:
    assert len(PRIVATE_ASYNCIO) <= 10
    assert len(set(PRIVATE_ASYNCIO)) == len(PRIVATE_ASYNCIO)


@pytest.mark.parametrize("name", PRIVATE_ASYNCIO)
def test_each_private_name_exists(name: str, loop: asyncio.SelectorEventLoop) -> None:
    assert resolve(name, loop) is not None or name == "BaseEventLoop._thread_id"


def test_run_once_runs_ready_callbacks_and_due_timers(loop: asyncio.SelectorEventLoop) -> None:
    seen: list[str] = []
    loop.call_soon(seen.append, "soon")
    assert isinstance(loop._ready, collections.deque) and len(loop._ready) == 1  # type: ignore[attr-defined]
    assert inspect.ismethod(loop._run_once)  # type: ignore[attr-defined]
    loop._run_once()  # type: ignore[attr-defined]
    assert seen == ["soon"] and not loop._ready  # type: ignore[attr-defined]


def test_the_timer_heap_and_its_cancelled_count(loop: asyncio.SelectorEventLoop) -> None:
    handles = [loop.call_at(when, print) for when in (3.0, 1.0, 2.0)]
    scheduled = loop._scheduled  # type: ignore[attr-defined]
    assert isinstance(scheduled, list)
    assert heapq.nsmallest(1, scheduled)[0] is handles[1] and scheduled[0].when() == 1.0
    assert loop._timer_cancelled_count == 0  # type: ignore[attr-defined]
    handles[1].cancel()
    assert scheduled[0].cancelled() and loop._timer_cancelled_count == 1  # type: ignore[attr-defined]
    for handle in handles:
        handle.cancel()


def test_clock_resolution_is_the_monotonic_clocks(loop: asyncio.SelectorEventLoop) -> None:
    import time

    resolution = loop._clock_resolution  # type: ignore[attr-defined]
    assert resolution == time.get_clock_info("monotonic").resolution


def test_thread_id_marks_a_running_loop(loop: asyncio.SelectorEventLoop) -> None:
    assert loop._thread_id is None and not loop.is_running()  # type: ignore[attr-defined]
    loop._thread_id = threading.get_ident()  # type: ignore[attr-defined]
    try:
        assert loop.is_running()
    finally:
        loop._thread_id = None  # type: ignore[attr-defined]


def test_set_running_loop_and_the_asyncgen_hooks(loop: asyncio.SelectorEventLoop) -> None:
    asyncio.events._set_running_loop(loop)
    try:
        assert asyncio.get_running_loop() is loop
    finally:
        asyncio.events._set_running_loop(None)
    assert isinstance(loop._asyncgens, weakref.WeakSet)  # type: ignore[attr-defined]
    assert callable(loop._asyncgen_firstiter_hook)  # type: ignore[attr-defined]
    assert callable(loop._asyncgen_finalizer_hook)  # type: ignore[attr-defined]


def test_the_kit_uses_them_end_to_end() -> None:
    """Timers, readiness, the running loop and async generators through a real runtime."""
    closed: list[bool] = []

    async def numbers() -> object:
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async def scenario() -> tuple[int, float, bool]:
        gen = numbers()
        first = await gen.__anext__()  # type: ignore[attr-defined]
        await asyncio.sleep(30)
        return first, asyncio.get_running_loop().time(), asyncio.get_running_loop().is_running()

    with DriverRuntime() as runtime:
        assert runtime.run_to_completion(scenario()) == (1, 30.0, True)
    assert closed == [True]
