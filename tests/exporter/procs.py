"""Test helpers: an exporter subprocess (``tether exporter serve``) and a notification socket.

Readiness is the "ready" line on the exporter's stdout; lifecycle events come as lines on a
unix socket the test listens on (see ``lab_drivers.notify``). Nothing here sleeps or polls.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
TETHER = Path(sys.executable).parent / "tether"


def subprocess_env() -> dict[str, str]:
    """The environment for child processes: this directory importable (``lab_drivers``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH")]))
    for name in ("TETHER_TOKEN", "TETHER_CA", "TETHER_CERT", "TETHER_KEY"):
        env.pop(name, None)
    return env


class ExporterProcess:
    """``tether exporter serve CONFIG [ARGS]`` in a child process; stderr goes to ``log``."""

    def __init__(self, config: Path, *args: str, log: Path) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            [str(TETHER), "exporter", "serve", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            stdin=subprocess.DEVNULL,
            env=subprocess_env(),
            text=True,
        )
        self.urls: list[str] = []

    def wait_ready(self) -> list[str]:
        """Read stdout up to the "ready" line; fail with the log if the process ends first."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.strip()
            if line == "ready":
                return self.urls
            if line.startswith("listening on "):
                self.urls.append(line.removeprefix("listening on "))
        status = self.process.wait()
        raise AssertionError(f"exporter exited ({status}) before ready:\n{self.stderr()}")

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait for the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        finally:
            self.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self) -> None:
        self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log_file.close()


class Notifications:
    """A unix socket that test drivers report to; :meth:`next` waits for one line."""

    def __init__(self, path: Path, timeout: float = 15.0) -> None:
        self.path = str(path)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(16)
        self._server.settimeout(timeout)

    def next(self) -> str:
        """The next message (raises TimeoutError when none comes in time)."""
        conn, _ = self._server.accept()
        with conn, conn.makefile("r") as lines:
            return lines.readline().strip()

    def wait_for(self, message: str) -> list[str]:
        """Read messages until ``message``; return those read before it."""
        seen: list[str] = []
        while (got := self.next()) != message:
            seen.append(got)
        return seen

    def close(self) -> None:
        self._server.close()
