"""``serve()`` reuses an idle loop thread only when nothing of the last session is left on it."""

from __future__ import annotations

import asyncio
import os
import select
import threading

import pytest

from tether import Driver, export
from tether.testing import serve
from tether.testing._serve import SERVE_LOOPS
from tether.wire._spinning import NATIVE

needs_native = pytest.mark.skipif(not NATIVE, reason="only a SpinningSelector loop is parked")

_stale: list[asyncio.Task[None]] = []


class Probe(Driver):
    """Says where it runs and what else is on its loop."""

    @export
    async def thread(self) -> int:
        return threading.get_ident()

    @export
    async def others(self) -> list[str]:
        current = asyncio.current_task()
        return sorted(repr(task.get_coro()) for task in asyncio.all_tasks() if task is not current)


class LeavesATask(Probe):
    """Starts a task nothing owns: it outlives the session."""

    async def start(self) -> None:
        _stale.append(asyncio.get_running_loop().create_task(asyncio.Event().wait()))


class FailsToStart(Probe):
    def __init__(self, leave_a_task: bool = False) -> None:
        super().__init__()
        self.leave_a_task = leave_a_task

    async def start(self) -> None:
        if self.leave_a_task:
            _stale.append(asyncio.get_running_loop().create_task(asyncio.Event().wait()))
        raise RuntimeError("no device")


def served_thread() -> int:
    with serve(Probe()) as probe:
        ident = probe.call("thread")
        assert probe.call("others") == []
    assert isinstance(ident, int)
    return ident


@needs_native
def test_consecutive_serves_share_one_loop_thread() -> None:
    assert served_thread() == served_thread() == served_thread()


@needs_native
def test_a_session_that_leaves_a_task_is_not_reused_and_the_next_does_not_see_it() -> None:
    served_thread()
    with serve(LeavesATask()) as leaving:
        leaving.call("thread")
        assert len(leaving.call("others")) == 1
    assert SERVE_LOOPS.parked is None  # closed, as without the pool
    assert _stale[-1].cancelled()
    served_thread()  # a new loop: "others" is empty there
    assert SERVE_LOOPS.parked is not None


def test_nested_serves_get_different_loops() -> None:
    with serve(Probe()) as outer, serve(Probe()) as inner:
        assert outer.call("thread") != inner.call("thread")


def test_serves_from_several_threads_at_once_get_different_loops() -> None:
    barrier = threading.Barrier(3, timeout=30)
    seen: list[int] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            with serve(Probe()) as probe:
                seen.append(probe.call("thread"))
                barrier.wait()  # all three sessions are open at once
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(set(seen)) == 3
    served_thread()


@pytest.mark.parametrize("leave_a_task", [False, True])
def test_a_failing_start_still_raises_and_the_next_serve_works(leave_a_task: bool) -> None:
    served_thread()
    with pytest.raises(RuntimeError, match="no device"), serve(FailsToStart(leave_a_task)):
        pass
    if leave_a_task:
        assert SERVE_LOOPS.parked is None and _stale[-1].cancelled()
    served_thread()


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
@needs_native
def test_serve_works_in_a_forked_child_and_the_parents_parked_loop_still_does() -> None:
    before = served_thread()
    assert SERVE_LOOPS.parked is not None
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's teardown
        status = 1
        try:
            assert SERVE_LOOPS.parked is None  # the parent's thread is not here
            child = served_thread()
            assert served_thread() == child  # the child parks its own
            os.write(writable, b"ok")
            status = 0
        finally:
            os._exit(status)
    os.close(writable)
    ready, _, _ = select.select([readable], [], [], 60)
    answer = os.read(readable, 16) if ready else b"timed out"
    os.close(readable)
    if not ready:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    assert answer == b"ok" and os.waitstatus_to_exitcode(status) == 0
    # The child closed its copy of the parked loop without touching the shared epoll
    # instance: the parent's loop still wakes for its next session.
    assert served_thread() == before
