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


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_hook_that_prints_without_end_keeps_only_a_bounded_tail() -> None:
    from tether.exporter._hooks import OUTPUT_TAIL_BYTES

    before = _rss_bytes()
    result = run("yes", time_limit=1.5)
    assert result.status is None
    # The end of the output only, with a note of how much was dropped.
    assert len(result.output.encode()) < OUTPUT_TAIL_BYTES + 200
    assert result.output.startswith("[") and "earlier bytes dropped" in result.output
    assert _rss_bytes() - before < 64 * 1024 * 1024


def test_a_hook_whose_child_holds_its_output_succeeds_and_the_child_is_killed(
    tmp_path: Path,
) -> None:
    import os
    import select

    pid_file = tmp_path / "child.pid"
    result = run(f"sleep 1000 & echo $! > {pid_file}; echo started", time_limit=20)
    assert result.ok, result.describe()  # not a time-out
    assert "started" in result.output
    child = int(pid_file.read_text())
    try:
        fd = os.pidfd_open(child)
    except ProcessLookupError:
        return  # already gone and reaped
    try:
        readable, _, _ = select.select([fd], [], [], 10)
        assert readable, "the hook's background child survived it"
    finally:
        os.close(fd)
