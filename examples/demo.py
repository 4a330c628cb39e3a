"""tether's demo: a whole lab on this machine, driven end to end. Run it with `make demo`.

1. a controller (`tether controller serve`, SQLite file, TLS, router relay);
2. an exporter identity and a client identity (`tether admin create-exporter/create-client`);
3. an exporter (`tether exporter serve`) with the board of examples/lab.yaml: the QEMU board,
   or, where QEMU cannot run, the simulated board of examples/lab-sim.yaml (it says why);
4. a lease on `board=demo`, through the controller's relay;
5. flash a 32 MiB gzip image (progress bar), power on, wait for the login prompt, run
   `uname -a`, read the flashed image back from the board's /dev/vda, power off;
6. release, stop everything, and print what happened and how long each step took.

Options: `--board auto|qemu|sim`, `--direct` (no controller: the exporter in this process,
connected to directly), `--serve` (start the lab and keep it up for `tether exporters`,
`tether lease` and `pytest examples/test_board.py`; Ctrl-C stops it), `--config FILE` (serve
another exporter config). See docs/demo.md.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from demolab import DemoLab, LabError, board_choice
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import tether
from tether.client import LeasedSession
from tether.errors import TetherError

HERE = Path(__file__).resolve().parent
SELECTOR = "board=demo"
IMAGE_MIB = 32
BOOT_TIMEOUT = 90.0
COMMAND_TIMEOUT = 30.0
LOGIN_OR_PROMPT = re.compile(rb"login: |[\w@:~-]+# ")
PROMPT = re.compile(rb"[\w@:~-]+# ")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

console = Console(highlight=False)


@dataclass
class Step:
    name: str
    detail: str = ""
    seconds: float = 0.0
    ok: bool = True


@dataclass
class Run:
    """The steps done so far, each printed as it ends; the summary table at the end."""

    steps: list[Step] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Step]:
        """Time one step; its body sets ``detail``. A failure is printed and re-raised."""
        step = Step(name)
        start = time.perf_counter()
        try:
            yield step
        except BaseException as exc:
            step.ok = False
            step.detail = _short(exc)
            raise
        finally:
            step.seconds = time.perf_counter() - start
            self.steps.append(step)
            mark = "[green]✓[/]" if step.ok else "[red]✗[/]"
            console.print(
                f"{mark} {name:<11} {escape(step.detail)} [dim]({_seconds(step.seconds)})[/]",
                soft_wrap=True,
            )

    def note(self, name: str, detail: str, seconds: float) -> None:
        """A step timed elsewhere (the lab's processes coming up)."""
        self.steps.append(Step(name, detail, seconds))
        console.print(
            f"[green]✓[/] {name:<11} {escape(detail)} [dim]({_seconds(seconds)})[/]", soft_wrap=True
        )

    def summary(self, title: str) -> Table:
        table = Table(title=title, title_justify="left")
        table.add_column("step", style="bold")
        table.add_column("what happened")
        table.add_column("time", justify="right")
        for step in self.steps:
            mark = "" if step.ok else "[red]FAILED[/] "
            table.add_row(step.name, mark + escape(step.detail), _seconds(step.seconds))
        table.add_section()
        table.add_row("total", "", _seconds(time.perf_counter() - self.started))
        return table


def _seconds(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _short(exc: BaseException) -> str:
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _exit(name: str, status: int) -> str:
    if status == -signal.SIGTERM:  # uvicorn re-raises the signal after its graceful shutdown
        return f"{name} stopped (SIGTERM)"
    return f"{name} exit {status}"


def _clean(data: bytes) -> str:
    return _ANSI.sub("", data.decode(errors="replace")).replace("\r", "")


# -- the lab: through the controller (default) or direct ---------------------------------------


class Lab:
    """Where the board is: opens the client tree and stops everything afterwards."""

    def __init__(self, run: Run, config: Path, direct: bool) -> None:
        self.run = run
        self.config = config
        self.direct = direct
        self.stack = contextlib.ExitStack()
        self.demo_lab: DemoLab | None = None

    def start(self) -> None:
        """Bring up the lab's processes (controller path) or nothing yet (direct path)."""
        if self.direct:
            return
        last = time.perf_counter()

        def on_step(name: str, detail: str) -> None:
            nonlocal last
            now = time.perf_counter()
            self.run.note(name, detail, now - last)
            last = now

        self.demo_lab = DemoLab(self.config, {"board": "demo"}, on_step)
        self.stack.callback(self._stop_processes)
        self.demo_lab.start()

    def _stop_processes(self) -> None:
        assert self.demo_lab is not None
        with self.run.step("stop lab") as step:
            statuses = self.demo_lab.close()
            step.detail = ", ".join(_exit(name, status) for name, status in statuses)
            step.detail += "; temporary files removed"

    def open(self) -> Any:
        """The client tree: leased through the controller, or connected directly."""
        if self.direct:
            from tether.exporter import run_exporter_in_thread

            with self.run.step("exporter") as step:
                running = self.stack.enter_context(run_exporter_in_thread(self.config))
                step.detail = f"in this process at {running.url} (direct mode: no controller)"
            with self.run.step("connect") as step:
                dut = tether.connect(running.url, token=running.token)
                self.stack.callback(self._disconnect, dut)
                step.detail = f"direct connection, session {dut.session.session_id}"
            return dut
        assert self.demo_lab is not None
        # Explicit settings, so the user's TETHER_TOKEN & co. cannot take precedence.
        controller, token, ca = self.demo_lab.client_settings()
        with self.run.step("lease") as step:
            leases = contextlib.ExitStack()
            dut = leases.enter_context(
                tether.lease(
                    selector=SELECTOR,
                    duration="10m",
                    controller=controller,
                    token=token,
                    ca=ca,
                    progress=False,
                )
            )
            self.stack.callback(self._release, leases)
            session = dut.session
            assert isinstance(session, LeasedSession)
            lease = session.lease
            step.detail = (
                f"lease {lease.id[:8]} on {', '.join(lease.exporters)} ({SELECTOR}), "
                "through the relay"
            )
        return dut

    def _disconnect(self, dut: Any) -> None:
        with self.run.step("disconnect") as step:
            dut.close()
            step.detail = "connection closed; the exporter stops the session's drivers"

    def _release(self, leases: contextlib.ExitStack) -> None:
        with self.run.step("release") as step:
            leases.close()
            step.detail = "lease released; the exporter stopped the session's drivers"

    def failure_report(self) -> str:
        return self.demo_lab.failure_report() if self.demo_lab is not None else ""

    def close(self) -> None:
        """Release, disconnect and stop, in order; a Ctrl-C meanwhile waits for the end."""
        interrupted = False

        def later(signum: int, frame: FrameType | None) -> None:
            nonlocal interrupted
            interrupted = True
            console.print("[yellow]stopping the lab first...[/]")

        previous = {sig: signal.signal(sig, later) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.stack.close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if interrupted:
            raise KeyboardInterrupt


# -- what the demo does with the board ----------------------------------------------------------


def build_image(directory: Path, mib: int) -> tuple[Path, str]:
    """A ``mib`` MiB disk image, gzip-compressed: a header line, random data, then zeros."""
    header = f"TETHER-DEMO-IMAGE v1 size={mib}MiB built={time.strftime('%H:%M:%S')}"
    path = directory / "demo-disk.img.gz"
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(header.encode() + b"\n")
        random_mib = min(4, mib)
        out.write(os.urandom((random_mib << 20) - len(header) - 1))
        zeros = bytes(1 << 20)
        for _ in range(mib - random_mib):
            out.write(zeros)
    return path, header


def drive(dut: Any, run: Run, image: Path, header: str) -> None:
    """Flash, boot, log in, run commands, power off."""
    board = dut.board
    with run.step("flash") as step:
        board.power.off()  # a board is flashed while it is off
        board.disk.host()
        result = board.disk.write(image, progress=True)
        board.disk.dut()
        step.detail = (
            f"{result.bytes / 2**20:.0f} MiB written ({result.compression}, "
            f"{result.sent / 2**20:.1f} MiB sent) at {result.mb_s:.0f} MB/s, "
            f"sha256 {result.sha256[:12]}"
        )
    with board.console.open() as con:  # open before power-on: nothing of the boot is lost
        with run.step("power on") as step:
            board.power.on()
            if not board.power.status():
                raise TetherError("the board is still off after power.on()")
            step.detail = "power status on"
        with run.step("boot") as step:
            start = time.perf_counter()
            match = con.expect(LOGIN_OR_PROMPT, timeout=BOOT_TIMEOUT)
            before = _clean(match.string[: match.start()]).split("\n")[:-1]
            lines = [line.strip() for line in before if line.strip()]
            # The board's banner ("=== tether QEMU board", "Welcome to"), else the last line.
            banner = next(
                (line for line in reversed(lines) if line.startswith(("===", "Welcome"))),
                lines[-1] if lines else "",
            )
            what = "login prompt" if match.group(0) == b"login: " else "shell prompt"
            step.detail = f"{what} after {time.perf_counter() - start:.1f} s: {banner.strip()}"
            if what == "login prompt":
                con.sendline("root")
                con.expect(PROMPT, timeout=COMMAND_TIMEOUT)
                step.detail += "; logged in as root"
        with run.step("command") as step:
            step.detail = "uname -a: " + _run_command(con, "uname -a")
        with run.step("read back") as step:
            first = _run_command(con, "head -n 1 /dev/vda")
            if first != header:
                raise TetherError(f"/dev/vda starts with {first!r}, expected {header!r}")
            step.detail = f"the board's /dev/vda starts with the flashed header: {first}"
    with run.step("power off") as step:
        board.power.off()
        if board.power.status():
            raise TetherError("the board is still on after power.off()")
        step.detail = "power status off"


def _run_command(con: Any, command: str) -> str:
    """Run ``command`` at the board's shell prompt; its output, without the echoed line."""
    con.sendline(command)
    match = con.expect(PROMPT, timeout=COMMAND_TIMEOUT)
    lines = _clean(match.string[: match.start()]).split("\n")[1:]  # [0] is the echo
    return " / ".join(line.strip() for line in lines if line.strip())


# -- entry points -------------------------------------------------------------------------------


def _interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so the cleanup runs (even when a shell
    started us with SIGINT ignored)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)


def lab_config(board: str, config: Path | None) -> tuple[Path, str, str]:
    """The exporter config to serve: ``(path, board kind, why)``."""
    if config is not None:
        return config.resolve(), "custom", f"from {config} (--config)"
    kind, why = board_choice(board)
    return HERE / ("lab.yaml" if kind == "qemu" else "lab-sim.yaml"), kind, why


def demo(board: str, config_file: Path | None, direct: bool, image_mib: int) -> int:
    """The end-to-end demo; returns the exit status."""
    run = Run()
    config, kind, why = lab_config(board, config_file)
    path = "direct (exporter in this process, no controller)" if direct else "controller + lease"
    console.print(f"[bold]tether demo[/]: board: {why}", soft_wrap=True)
    console.print(f"lab config {_shown(config)}, path: {path}", soft_wrap=True)
    lab = Lab(run, config, direct)
    status = 0
    try:
        with tempfile.TemporaryDirectory(prefix="tether-demo-image-") as scratch:
            with run.step("image") as step:
                image, header = build_image(Path(scratch), image_mib)
                step.detail = (
                    f"{image_mib} MiB disk image, gzip: {image.stat().st_size / 2**20:.1f} MiB"
                )
            try:
                lab.start()
                dut = lab.open()
                drive(dut, run, image, header)
            finally:
                lab.close()
    except KeyboardInterrupt:
        console.print("[red]demo interrupted[/]: everything it started was stopped")
        status = 130
    except Exception as exc:  # every failure: a clear message, the logs, status 1
        console.print(
            f"[red]demo failed[/]: {type(exc).__name__}: {escape(str(exc))}", soft_wrap=True
        )
        if not isinstance(exc, LabError) and (report := lab.failure_report()):
            console.print(report, soft_wrap=True, markup=False)
        status = 1
    names = {"qemu": "QEMU board", "sim": "simulated board", "custom": config.name}
    title = f"tether demo: {names[kind]}, {path}"
    console.print(run.summary(title))
    if status == 0:
        console.print("demo ok: see docs/demo.md to run examples/test_board.py on your lab")
    return status


def serve(board: str, config_file: Path | None) -> int:
    """Start the lab and keep it up until Ctrl-C or SIGTERM."""
    config, _, why = lab_config(board, config_file)
    console.print(f"[bold]tether demo lab[/]: board: {why}", soft_wrap=True)
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
    lab = DemoLab(
        config,
        {"board": "demo"},
        lambda name, detail: console.print(f"✓ {name} {detail}", soft_wrap=True),
    )
    try:
        lab.start()
        env = f"TETHER_CONFIG={lab.client_config}"
        console.print(f"lab ready: {env}", soft_wrap=True)
        console.print(f"  {env} tether exporters", soft_wrap=True)
        console.print(
            f"  {env} pytest examples/test_board.py --tether-selector {SELECTOR}", soft_wrap=True
        )
        console.print("Ctrl-C stops the lab.")
        sys.stdout.flush()
        stop.wait()
    except LabError as exc:
        console.print(f"[red]lab failed[/]: {escape(str(exc))}", soft_wrap=True)
        return 1
    finally:
        statuses = lab.close()
        console.print("lab stopped: " + ", ".join(_exit(n, s) for n, s in statuses))
    return 0


def _shown(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--board", choices=["auto", "qemu", "sim"], default="auto")
    parser.add_argument(
        "--config", type=Path, help="serve this exporter config instead (nodes board.power, ...)"
    )
    parser.add_argument("--direct", action="store_true", help="no controller: connect directly")
    parser.add_argument("--serve", action="store_true", help="start the lab and keep it up")
    parser.add_argument("--image-mib", type=int, default=IMAGE_MIB, help="disk image size")
    args = parser.parse_args(argv)
    if args.image_mib < 1:
        parser.error(f"--image-mib: {args.image_mib} is not a size in MiB (1 or more)")
    try:
        if args.serve:
            return serve(args.board, args.config)
        _interrupt_on_signals()
        return demo(args.board, args.config, args.direct, args.image_mib)
    except LabError as exc:  # --board qemu where QEMU cannot run
        console.print(f"[red]demo failed[/]: {escape(str(exc))}", soft_wrap=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
