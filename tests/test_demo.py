"""`make demo` end to end: examples/demo.py as a subprocess (what `make demo` runs), its lab mode
with examples/test_board.py run by pytest against it, the simulated-board fallback, Ctrl-C.

Real everything: a controller process on SQLite, an exporter process, the QEMU board (or the
simulated board where QEMU cannot run), leases through the relay.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from lean_pytest import UNUSED_PLUGINS
from tether.drivers.qemu import default_assets_dir

# The limits that mean something are the demo's own (LIMIT, the subprocess timeouts below);
# the suite's default of 120 s a test cut the lab test (a lab, then a pytest run against it)
# on a loaded 2-core machine, under the limits it checks.
pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.py"
LIMIT = 120.0  # the demo's promise: well under two minutes on two cores

STEPS = ["image", "controller", "identities", "exporter", "lease", "flash", "power on",
         "boot", "command", "read back", "power off", "release", "stop lab"]  # fmt: skip


def qemu_can_run() -> bool:
    assets = default_assets_dir()
    return shutil.which("qemu-system-x86_64") is not None and all(
        (assets / name).is_file() for name in ("vmlinuz", "initramfs.cpio.gz")
    )


def demo_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env.update(COLUMNS="200", **extra)
    return env


def run_demo(*args: str, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(DEMO), *args],
        cwd=ROOT,
        env=demo_env(**env),
        capture_output=True,
        text=True,
        timeout=LIMIT + 30,
        check=False,
    )
    return done, time.perf_counter() - start


def step_lines(output: str) -> dict[str, str]:
    """``{step: line}`` for every ``✓ step ...`` line."""
    lines = {}
    for line in output.splitlines():
        for step in [*STEPS, "disconnect", "connect"]:
            if re.match(rf"✓ {step}\s{{2,}}|✓ {step} \S", line) and step not in lines:
                lines[step] = line
    return lines


def test_make_demo_runs_the_whole_job_through_the_controller() -> None:
    # The user's own client settings must not leak into the demo's lease.
    done, seconds = run_demo(TETHER_TOKEN="tth_not-the-demo-token")
    output = done.stdout
    assert done.returncode == 0, f"{output}\n{done.stderr}"
    assert seconds < LIMIT
    lines = step_lines(output)
    assert list(lines)[: len(STEPS)] == STEPS, output
    if qemu_can_run():
        assert "board: QEMU board" in output
        assert "=== tether QEMU board" in lines["boot"]
    else:
        assert "using the simulated board (Python, real pty)" in output
        assert "login prompt" in lines["boot"]
    assert "path: controller + lease" in output
    assert re.search(r"lease \w+ on demo-1 \(board=demo\), through the relay", lines["lease"])
    assert re.search(r"32 MiB written \(gzip, [\d.]+ MiB sent\)", lines["flash"])
    assert "write demo-disk.img.gz" in done.stderr  # the progress bar
    assert "uname -a: Linux " in lines["command"]
    assert "starts with the flashed header: TETHER-DEMO-IMAGE v1" in lines["read back"]
    assert "power status off" in lines["power off"]
    assert "exporter exit 0" in lines["stop lab"]
    assert "demo ok" in output
    # The summary table, and nothing left behind.
    assert re.search(r"│ total\s+│\s+│\s+[\d.]+ (s|ms) │", output)
    workdir = re.search(r"sqlite:///(/\S+)/controller\.db", lines["controller"])
    assert workdir is not None and not Path(workdir.group(1)).exists()


def test_without_qemu_the_simulated_board_runs_and_says_why() -> None:
    done, _ = run_demo("--direct", TETHER_QEMU_ASSETS="/nonexistent-tether-assets")
    output = done.stdout
    assert done.returncode == 0, f"{output}\n{done.stderr}"
    assert "missing from /nonexistent-tether-assets" in output
    assert "using the simulated board (Python, real pty)" in output
    assert "path: direct (exporter in this process, no controller)" in output
    lines = step_lines(output)
    assert "login prompt after" in lines["boot"] and "logged in as root" in lines["boot"]
    assert "Linux simboard" in lines["command"]
    assert "TETHER-DEMO-IMAGE" in lines["read back"]
    assert "disconnect" in lines


def test_board_qemu_without_qemu_fails_with_a_clear_message() -> None:
    done, _ = run_demo("--board", "qemu", TETHER_QEMU_ASSETS="/nonexistent-tether-assets")
    assert done.returncode == 1
    assert "demo failed: --board qemu: the QEMU board's vmlinuz and initramfs.cpio.gz" in (
        done.stdout
    )
    assert "run `make setup`" in done.stdout


@contextmanager
def demo_process(*args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, str(DEMO), *args],
        cwd=ROOT,
        env=demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def read_until(process: subprocess.Popen[str], pattern: str) -> re.Match[str]:
    """Read the output line by line until ``pattern`` matches (or the process ends)."""
    assert process.stdout is not None
    seen = ""
    for line in process.stdout:
        seen += line
        match = re.search(pattern, line)
        if match:
            return match
    pytest.fail(f"the demo ended (status {process.wait()}) before /{pattern}/:\n{seen}")


def test_the_example_tests_pass_against_the_demo_lab() -> None:
    with demo_process("--serve") as lab:
        match = read_until(lab, r"lab ready: TETHER_CONFIG=(\S+)")
        client_config = Path(match.group(1))
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             *UNUSED_PLUGINS, "examples/test_board.py", "--tether-selector", "board=demo"],
            cwd=ROOT,
            env=demo_env(TETHER_CONFIG=str(client_config)),
            capture_output=True,
            text=True,
            timeout=LIMIT,
            check=False,
        )  # fmt: skip
        assert tests.returncode == 0, tests.stdout + tests.stderr
        assert re.search(r"tether: lease \w+ on demo-1", tests.stdout)
        assert "6 passed" in tests.stdout
        lab.send_signal(signal.SIGINT)
        read_until(lab, r"lab stopped: exporter exit 0")
        assert lab.wait(timeout=30) == 0
    assert not client_config.parent.exists()


def test_ctrl_c_releases_the_lease_and_stops_everything() -> None:
    with demo_process("--board", "sim") as demo:
        match = read_until(demo, r"sqlite:///(/\S+)/controller\.db")
        workdir = Path(match.group(1))
        read_until(demo, r"✓ lease ")
        demo.send_signal(signal.SIGINT)
        assert demo.stdout is not None
        rest = demo.stdout.read()
        assert demo.wait(timeout=30) == 130
    assert "demo interrupted" in rest
    assert re.search(r"✓ release\s+lease released", rest)
    assert re.search(r"✓ stop lab\s+exporter exit 0", rest)
    assert not workdir.exists()


def test_a_failing_step_stops_everything_and_exits_1(tmp_path: Path) -> None:
    # A QEMU board whose QEMU binary is missing: the lease and the flash work, power-on fails.
    config = tmp_path / "broken-lab.yaml"
    boot_file = ROOT / "examples" / "lab.yaml"  # any existing file passes the start check
    config.write_text(
        "name: broken\nlabels: {board: demo}\nexport:\n  board:\n"
        "    type: tether.drivers.qemu.Qemu\n"
        f"    config: {{qemu: /nonexistent/qemu, kernel: {boot_file}, initrd: {boot_file}}}\n"
    )
    done, _ = run_demo("--config", str(config))
    output = done.stdout
    assert done.returncode == 1, output
    assert re.search(r"✗ power on\s+DriverError: \S*QemuError: /nonexistent/qemu not found", output)
    assert "demo failed: DriverError:" in output
    assert "exporter's last output:" in output  # the lab's logs, to see what went on
    assert re.search(r"✓ release\s+lease released", output)
    assert re.search(r"✓ stop lab\s+exporter exit 0", output)
    assert "FAILED" in output  # the summary table marks the step
    workdir = re.search(r"sqlite:///(/\S+)/controller\.db", output)
    assert workdir is not None and not Path(workdir.group(1)).exists()
