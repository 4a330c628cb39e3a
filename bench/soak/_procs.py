"""The soak's supervised processes: start, ``kill -9``, restart, and what each one said."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

#: Written to a process's log before each of its lives (the books split logs on it).
LIFE_MARK = "=== tether soak: started"


class Proc:
    """One supervised child: how to start it, its current process, its log.

    ``pipe``: its stdout is read line by line (:meth:`on_line`) and copied to the log;
    otherwise stdout and stderr both go to the log.
    """

    def __init__(self, name: str, argv: list[str], log: Path, *, pipe: bool = False) -> None:
        self.name = name
        self.argv = argv
        self.log = log
        self.pipe = pipe
        self.process: subprocess.Popen[str] | None = None
        self.lock = threading.RLock()
        self.generation = 0  # one per life
        self.killed = False  # the current life was ended by us
        self.died_at: float | None = None  # monotonic time its last life ended
        self.exits: Counter[int] = Counter()  # exit statuses of lives that ended by themselves

    def start(self) -> None:
        with self.lock:
            with self.log.open("a") as out:
                out.write(f"{LIFE_MARK} {time.time():.3f}\n")
                out.flush()
                stdout = subprocess.PIPE if self.pipe else out
                self.process = subprocess.Popen(
                    self.argv,
                    stdout=stdout,
                    stderr=out,
                    text=True,
                    env={k: v for k, v in os.environ.items() if not k.startswith("TETHER_")},
                )
            self.generation += 1
            self.killed = False
            self.died_at = None
            generation = self.generation
        if self.pipe:
            threading.Thread(target=self._read, args=(generation,), daemon=True).start()

    def alive(self) -> bool:
        with self.lock:
            return self.process is not None and self.process.poll() is None

    def kill(self, generation: int | None = None) -> bool:
        """SIGKILL the current life (only if it is still ``generation``); True if killed."""
        with self.lock:
            if generation is not None and generation != self.generation:
                return False
            if self.process is None or self.process.poll() is not None:
                return False
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.killed = True
            self.died_at = time.monotonic()
            return True

    def reap(self) -> bool:
        """True if the current life ended by itself since the last call (its status counted)."""
        with self.lock:
            if self.process is None or self.died_at is not None:
                return False
            status = self.process.poll()
            if status is None:
                return False
            self.exits[status] += 1
            self.died_at = time.monotonic()
            return True

    def stop(self, timeout: float) -> bool:
        """SIGTERM, then wait ``timeout`` s; False (and SIGKILL) if it did not stop."""
        with self.lock:
            process = self.process
        if process is None or process.poll() is not None:
            return True
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            return False

    def _read(self, generation: int) -> None:
        with self.lock:
            process = self.process
        assert process is not None and process.stdout is not None
        with self.log.open("a") as out:
            for line in process.stdout:
                out.write(line)
                out.flush()
                self.on_line(line, generation)

    def on_line(self, line: str, generation: int) -> None:
        """One line of the child's stdout (``pipe`` only)."""


class Controller(Proc):
    """The controller: :attr:`ready` is set by its ``... ready at URL`` line."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        super().__init__(name, argv, log, pipe=True)
        self.ready = threading.Event()
        self.ready_at = 0.0  # monotonic

    def start(self) -> None:
        self.ready.clear()
        super().start()

    def on_line(self, line: str, generation: int) -> None:
        if "ready at" in line:
            self.ready_at = time.monotonic()
            self.ready.set()


class _Forked:
    """A ``multiprocessing`` process seen as a ``subprocess.Popen`` (what :class:`Proc` uses)."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        return self._process.exitcode

    def send_signal(self, signum: int) -> None:
        assert self.pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("worker", timeout or 0.0)
        return self._process.exitcode


def _forkserver() -> multiprocessing.context.BaseContext:
    """Workers are forked from one server that imported ``tether`` and the worker once."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["bench.soak._worker"])
    return context


class Worker(Proc):
    """A client worker (``_worker.py``): the step it is in, since when, for how long at most.

    :meth:`arm` asks for a kill the next time the worker enters a step (``request``, ``wait``,
    ``hold``, ``call``), ``delay`` seconds into it.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        log: Path,
        report: Callable[[Worker, dict[str, Any]], None],
    ) -> None:
        super().__init__(name, argv, log, pipe=True)
        self.report = report
        self.phase = "start"
        self.since = time.monotonic()
        self.bound = 60.0  # importing tether and friends, on a busy machine
        self.armed: tuple[str, float] | None = None
        self.armed_at = 0.0
        self.killed_in: str | None = None  # the step the last kill landed in

    _context: multiprocessing.context.BaseContext | None = None

    def start(self) -> None:
        from . import _worker

        if Worker._context is None:
            Worker._context = _forkserver()
        config, seed, duration = self.argv
        with self.lock:
            self.phase, self.since, self.bound = "start", time.monotonic(), 60.0
            self.armed = None
            with self.log.open("a") as out:
                out.write(f"{LIFE_MARK} {time.time():.3f}\n")
            reader, writer = Worker._context.Pipe(duplex=False)
            args = (config, int(seed) + self.generation, float(duration), str(self.log), writer)
            process = Worker._context.Process(target=_worker.run, args=args, name=self.name)
            process.start()
            writer.close()
            self.process = _Forked(process)  # type: ignore[assignment]
            self.generation += 1
            self.killed = False
            self.died_at = None
            generation = self.generation
        threading.Thread(target=self._receive, args=(reader, generation), daemon=True).start()

    def _receive(self, reader: Connection, generation: int) -> None:
        with self.log.open("ab") as out:
            while True:
                try:
                    line = reader.recv_bytes()
                except (EOFError, OSError):
                    break
                out.write(line + b"\n")
                out.flush()
                self.on_line(line.decode(errors="replace"), generation)
        reader.close()

    def arm(self, phase: str, delay: float) -> None:
        with self.lock:
            self.armed = (phase, delay)
            self.armed_at = time.monotonic()

    def kill_now(self, generation: int | None = None) -> str | None:
        """Kill it whatever it does; the step it was in, or None if it was not running."""
        with self.lock:
            phase = self.phase
            if not self.kill(generation):
                return None
            self.killed_in = phase
            self.armed = None
            return phase

    def on_line(self, line: str, generation: int) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        delay = None
        with self.lock:
            if generation != self.generation:
                return
            self.phase = str(record.get("phase"))
            self.since = time.monotonic()
            self.bound = float(record.get("bound", 60.0))
            if self.armed is not None and self.armed[0] == self.phase:
                delay = self.armed[1]
        self.report(self, record)
        if delay is not None:
            time.sleep(delay)
            phase = self.kill_now(generation)
            if phase is not None:
                self.report(self, {"phase": "killed", "in": phase})
