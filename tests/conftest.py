"""Shared fixtures. Tests never sleep to wait: they wait on events or use the test kit."""

import pytest
from hypothesis import HealthCheck, settings

from lean_pytest import INI

# Timing checks fail on a loaded 2-core CI machine without saying anything about the code:
# examples may take as long as they need (each test's own timeout still applies).
settings.register_profile("tether", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tether")


def pytest_unconfigure(config: object) -> None:
    """A thread a test left running must not hang the run at exit: name it and fail.

    Python waits for every non-daemon thread before it exits, so one leaked thread would keep
    CI waiting until its time limit. Give stragglers a moment, then report them (with where
    each is stuck) and end the process with a failing status.
    """
    import os
    import sys
    import threading
    import traceback

    stragglers = [
        t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
    ]
    for thread in stragglers:
        thread.join(10.0)
    alive = [t for t in stragglers if t.is_alive()]
    if not alive:
        return
    frames = sys._current_frames()
    print(f"\n{len(alive)} thread(s) left running after the tests:", file=sys.stderr)
    for thread in alive:
        stack = "".join(traceback.format_stack(frames[thread.ident])) if thread.ident else ""
        print(f"--- {thread.name}\n{stack}", file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(3)


@pytest.fixture
def pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    """pytester, whose runs leave out the plugins they never use (see lean_pytest.py)."""
    pytester.makeini(INI)
    return pytester
