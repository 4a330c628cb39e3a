"""The demo's lab: a controller and an exporter as child processes, in one temporary directory.

:class:`DemoLab` starts ``tether controller serve`` (SQLite file, TLS with a throwaway lab CA,
router relay), makes an exporter and a client identity with ``tether admin``, and starts
``tether exporter serve`` on a copy of the lab config with the controller section filled in.
Every process and file it made is gone after :meth:`DemoLab.close`, also after Ctrl-C or a
failure. Child processes get SIGKILL if this process dies without cleaning up (Linux).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

__all__ = ["ChildProcess", "DemoLab", "LabError", "board_choice"]

_PR_SET_PDEATHSIG = 1
_READY = re.compile(r"tether controller ready at (\S+) relay (\S+)")
_TETHER = [sys.executable, "-c", "from tether.cli import main; main()"]


class LabError(RuntimeError):
    """A lab process failed to start or died; the message has the end of its output."""


def board_choice(wanted: str) -> tuple[str, str]:
    """Pick the board: ``qemu`` when QEMU and the boot files are there, else ``sim``.

    Returns:
        ``(board, why)``: ``"qemu"`` or ``"sim"``, and a sentence saying why.
    """
    if wanted == "sim":
        return "sim", "simulated board asked for (--board sim)"
    from tether.drivers.qemu import default_assets_dir

    qemu = shutil.which("qemu-system-x86_64")
    assets = default_assets_dir()
    missing = [p for p in ("vmlinuz", "initramfs.cpio.gz") if not (assets / p).is_file()]
    problem = None
    if qemu is None:
        problem = "qemu-system-x86_64 is not installed"
    elif missing:
        problem = f"the QEMU board's {' and '.join(missing)} are missing from {assets}"
    if problem is None:
        return "qemu", f"QEMU board ({qemu}, TCG, kernel and initramfs from {assets})"
    if wanted == "qemu":
        raise LabError(f"--board qemu: {problem} (run `make setup`)")
    return "sim", f"{problem} (run `make setup`): using the simulated board (Python, real pty)"


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the demo dies, so nothing is left running."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ChildProcess:
    """A child process whose output (stdout and stderr, merged) is read line by line.

    The output goes to ``log`` and its last lines are kept for error messages;
    :meth:`wait_for` blocks until a line matches, the process exits, or a timeout.
    """

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.log = log
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self._lines: list[str] = []
        self._changed = threading.Condition()
        self._ended = False
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=env,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops us in order
            preexec_fn=_die_with_parent,
        )
        self._reader = threading.Thread(target=self._read, name=f"{name}-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        with self.log.open("w") as log:
            for line in self.process.stdout:
                log.write(line)
                log.flush()
                with self._changed:
                    self.tail.append(line.rstrip())
                    self._lines.append(line)
                    self._changed.notify_all()
        with self._changed:
            self._ended = True
            self._changed.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first output line (from the start) matching ``pattern``.

        Raises:
            LabError: the process exited first, or nothing matched within ``timeout``.
        """
        seen = 0
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines[seen:]:
                    match = pattern.search(line)
                    if match:
                        return match
                seen = len(self._lines)
                if self._ended:
                    self.process.wait()
                    raise LabError(
                        f"{self.name} exited with status {self.process.returncode} before "
                        f"printing /{pattern.pattern}/; its last output:\n{self.output_tail()}"
                    )
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    raise LabError(
                        f"{self.name} did not print /{pattern.pattern}/ within {timeout} s; "
                        f"its last output:\n{self.output_tail()}"
                    )

    def output_tail(self, lines: int = 15) -> str:
        with self._changed:
            return "\n".join(f"  | {line}" for line in list(self.tail)[-lines:]) or "  | (none)"

    def stop(self, grace: float = 15.0) -> int:
        """SIGTERM, then SIGKILL after ``grace`` seconds; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join()
        return self.process.returncode


class DemoLab:
    """A controller and one exporter serving ``lab_config``, as child processes.

    Args:
        lab_config: an exporter config without a ``controller`` section (examples/lab.yaml).
        labels: the exporter's labels, given by the admin (``board=demo``).
        on_step: called with ``(step, detail)`` as each part comes up.
    """

    def __init__(
        self,
        lab_config: Path,
        labels: dict[str, str],
        on_step: Callable[[str, str], None] = lambda step, detail: None,
    ) -> None:
        self.lab_config = lab_config
        self.labels = labels
        self.on_step = on_step
        self.dir = Path(tempfile.mkdtemp(prefix="tether-demo-"))
        self.database = f"sqlite:///{self.dir / 'controller.db'}"
        self.client_config = self.dir / "client.yaml"
        self.children: list[ChildProcess] = []
        self.url = ""
        self.relay = ""
        self.exporter_name = ""
        self._env = dict(os.environ)
        # Keep the user's own client settings out of the demo's lease.
        for name in ("TETHER_CONTROLLER", "TETHER_TOKEN", "TETHER_CA", "TETHER_CONFIG"):
            self._env.pop(name, None)
        # The exporter's scratch files (the board's disk image, QEMU's console socket) go in
        # here too, so removing the directory removes them even if a process was killed.
        scratch = self.dir / "tmp"
        scratch.mkdir()
        self._env["TMPDIR"] = str(scratch)

    def _tether(self, *args: str) -> str:
        done = subprocess.run(
            [*_TETHER, *args], capture_output=True, text=True, env=self._env, check=False
        )
        if done.returncode != 0:
            raise LabError(
                f"`tether {' '.join(args)}` failed with status {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()}"
            )
        return done.stdout

    def client_settings(self) -> tuple[str, str, str]:
        """The client identity for ``tether.lease``: ``(controller, token, ca)``."""
        data = yaml.safe_load(self.client_config.read_text())
        return str(data["endpoint"]), str(data["token"]), str(data["ca"])

    def start_controller(self) -> None:
        """``tether controller serve`` on a SQLite file with TLS and the relay."""
        certs = self.dir / "certs"
        self._tether("certs", "init", str(certs))
        controller = ChildProcess(
            "controller",
            [
                *_TETHER,
                "controller",
                "serve",
                "--listen",
                "https://127.0.0.1:0",
                "--relay-listen",
                "tls://127.0.0.1:0",
                "--database",
                self.database,
                "--tls-cert",
                str(certs / "server.pem"),
                "--tls-key",
                str(certs / "server.key"),
            ],
            self.dir / "controller.log",
            self._env,
        )
        self.children.append(controller)
        match = controller.wait_for(_READY, timeout=30)
        self.url, self.relay = match.group(1), match.group(2)
        self.on_step("controller", f"{self.url} (relay {self.relay}), {self.database}")

    def create_identities(self, exporter: str, client: str) -> Path:
        """``tether admin create-exporter`` and ``create-client``; returns the exporter config."""
        ca = str(self.dir / "certs" / "ca.pem")
        common = ["admin", "--database", self.database]
        labels = [
            arg for key, value in self.labels.items() for arg in ("--label", f"{key}={value}")
        ]
        token_file = self.dir / "exporter.token"
        section = yaml.safe_load(
            self._tether(
                *common,
                "create-exporter",
                exporter,
                *labels,
                "--endpoint",
                self.url,
                "--ca",
                ca,
                "--token-file",
                str(token_file),
            )
        )
        self.client_config.write_text(
            self._tether(*common, "create-client", client, "--endpoint", self.url, "--ca", ca)
        )
        self.client_config.chmod(0o600)
        config = yaml.safe_load(self.lab_config.read_text())
        config["name"] = exporter
        config["controller"] = section["controller"]
        path = self.dir / "lab.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.exporter_name = exporter
        self.on_step(
            "identities",
            f"exporter {exporter!r} ({', '.join(labels[1::2])}), client {client!r}",
        )
        return path

    def start_exporter(self, config: Path) -> None:
        """``tether exporter serve CONFIG``; returns once it registered with the controller."""
        exporter = ChildProcess(
            "exporter",
            [*_TETHER, "exporter", "serve", str(config)],
            self.dir / "exporter.log",
            self._env,
        )
        self.children.append(exporter)
        exporter.wait_for(re.compile(r"registered with \S+ as (\S+)"), timeout=30)
        self.on_step("exporter", f"{self.exporter_name} registered (outbound only, no listener)")

    def start(self, exporter: str = "demo-1", client: str = "demo-user") -> None:
        """Controller, identities, exporter: the whole lab."""
        self.start_controller()
        self.start_exporter(self.create_identities(exporter, client))

    def failure_report(self) -> str:
        """The last lines of every child's output, for an error message."""
        return "\n".join(
            f"{child.name}'s last output:\n{child.output_tail()}" for child in self.children
        )

    def close(self) -> list[tuple[str, int]]:
        """Stop the exporter, then the controller; remove every file. Returns exit statuses.

        Idempotent; :meth:`failure_report` still works afterwards.
        """
        statuses = [(child.name, child.stop()) for child in reversed(self.children)]
        shutil.rmtree(self.dir, ignore_errors=True)
        return statuses
