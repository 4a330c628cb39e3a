"""``run_hook``: exit status, collected output, timeouts, the environment hooks get."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from tether.exporter import HookResult, run_hook


def run(command: str, time_limit: float = 10.0, **env: str) -> HookResult:
    return asyncio.run(run_hook("before_lease", command, env=env, time_limit=time_limit))


def test_a_failing_hook_reports_its_status_and_the_end_of_its_output() -> None:
    result = run("for i in $(seq 1 30); do echo line $i; done; echo oops >&2; exit 3")
    assert result.status == 3 and not result.ok
    text = result.describe()
    assert text.startswith("hook before_lease exited with status 3")
    assert "line 30" in text and "oops" in text and "line 10\n" not in text  # last 20 lines


def test_a_hook_past_its_time_limit_is_killed_and_keeps_what_it_printed() -> None:
    started = time.monotonic()
    result = run("echo flashing; sleep 30", time_limit=0.3)
    assert time.monotonic() - started < 5
    assert result.status is None and "flashing" in result.output
    assert "timed out" in result.describe()


def test_hooks_see_tether_host_and_this_installation_first_on_path() -> None:
    result = run('echo "$TETHER_HOST"; command -v python', TETHER_HOST="unix:///x?session=s")
    assert result.ok
    host, python = result.output.split()
    assert host == "unix:///x?session=s"
    assert Path(python).parent == Path(sys.executable).parent
