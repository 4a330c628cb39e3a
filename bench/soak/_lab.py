"""The soak's lab: a controller with its relay, exporters and client workers, all real
processes on loopback, supervised (restarted when they die) and killed at random."""

from __future__ import annotations

import argparse
import contextlib
import random
import signal
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import _books
from ._procs import Controller, Proc, Worker

#: Every exporter: a power switch whose ``read`` streams for 0.2 s (a call a kill lands in).
_EXPORT = """
export:
  power:
    type: tether.drivers.power.MockPower
    config: {samples: 5, interval: 0.05}
"""
_TETHER = [sys.executable, "-c", "from tether.cli import main; main()"]
#: Client steps a kill is aimed at, and how far into the step it lands (at most, seconds).
_CLIENT_STEPS = {"request": 0.05, "wait": 0.5, "hold": 0.05, "call": 0.2}
#: Seconds a step may outlive its bound (a starved machine) before it is called a hang.
_HANG_SLACK = 15.0
#: Seconds an exporter that died waits before it is started again (as systemd would).
_RESTART_DELAY = 1.0
#: Seconds a session may stay open after its lease ended (the agent's retry back-off tops
#: out at 30 s while the controller is away).
LEAK_BOUND = 45.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def scratch_database(kind: str, tmp: Path) -> Iterator[str]:
    """A fresh controller database: a SQLite file in ``tmp``, or a PostgreSQL database on
    127.0.0.1:5432 (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / 'controller.db'}"
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
    from pglab import scratch_database as postgres_database

    with postgres_database("tether_soak") as url:
        yield url


class Soak:
    """The supervised lab, its kills and its books."""

    def __init__(self, tmp: Path, database_url: str, args: argparse.Namespace) -> None:
        from tether.controller import Admin, Database
        from tether.exporter import init_lab_certs

        self.args = args
        self.rng = random.Random(args.seed)
        certs = init_lab_certs(tmp / "certs", overwrite=True)
        self.url = f"https://127.0.0.1:{_free_port()}"
        limits = [
            f"claim_timeout={args.claim_timeout:g}",
            f"pending_poll_timeout={args.pending_timeout:g}",
        ]
        self.controller = Controller(
            "controller",
            [
                *_TETHER, "controller", "serve", "--listen", self.url,
                "--relay-listen", f"tls://127.0.0.1:{_free_port()}",
                "--database", database_url,
                "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
                "--heartbeat-interval", "1", "--heartbeat-timeout", "3",
                *(arg for limit in limits for arg in ("--limit", limit)),
            ],
            tmp / "controller.log",
        )  # fmt: skip
        database = Database(database_url)
        database.migrate()
        admin = Admin(database)
        self.exporters: list[Proc] = []
        self.logs: dict[str, _books.ExporterLog] = {}
        for i in range(args.exporters):
            issued = admin.create_exporter(f"soak-{i}", {"soak": "1"})
            path = tmp / f"exporter-{i}.yaml"
            path.write_text(issued.config(self.url, certs.ca) + _EXPORT)
            log = tmp / f"exporter-{i}.log"
            self.exporters.append(
                Proc(f"soak-{i}", [*_TETHER, "exporter", "serve", str(path)], log)
            )
            self.logs[f"soak-{i}"] = _books.ExporterLog(f"soak-{i}", log)
        self.workers: list[Worker] = []
        for i in range(args.clients):
            issued = admin.create_client(f"client-{i}")
            path = tmp / f"client-{i}.yaml"
            path.write_text(issued.config(self.url, certs.ca))
            argv = [str(path), str(args.seed * 1000 + i * 100), f"{args.duration:g}"]
            self.workers.append(Worker(f"client-{i}", argv, tmp / f"client-{i}.log", self._heard))
        database.dispose()
        self.database = _books.LabDatabase(database_url)
        self._lock = threading.Lock()
        self.leases = 0
        self.holds: dict[str, dict[str, Any]] = {}
        self.errors: Counter[str] = Counter()
        self.error_examples: dict[str, str] = {}
        self.kills: Counter[str] = Counter()
        self.hangs: list[str] = []
        self.crashes: list[str] = []
        self.leaked: dict[str, str] = {}
        self.controller_since = 0.0  # wall clock of its last ready
        self._kills_made = 0
        self._events = (tmp / "events.log").open("a", buffering=1)

    def event(self, text: str) -> None:
        """One line of ``events.log``: kills, starts, hangs, with the wall clock."""
        self._events.write(f"{time.time():.3f} {text}\n")

    # -- what the workers say -----------------------------------------------------------------

    def _heard(self, worker: Worker, record: dict[str, Any]) -> None:
        phase = record.get("phase")
        with self._lock:
            if phase == "hold":
                self.holds[str(record["lease"])] = {**record, "worker": worker.name}
            elif phase == "ok":
                self.leases += 1
            elif phase == "error":
                kind = str(record.get("kind"))
                self.errors[kind] += 1
                self.error_examples.setdefault(kind, str(record.get("message")))
            elif phase == "killed":
                self.kills[f"client in {record['in']}"] += 1
                self.event(f"{worker.name}: killed in {record['in']}")

    # -- running ------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self._start_controller()
        for proc in [*self.exporters, *self.workers]:
            proc.start()
        next_kill = started + self._kill_gap()
        next_check = started
        deadline = started + self.args.max_seconds
        while self._more_to_do() and time.monotonic() < deadline:
            time.sleep(0.05)
            self._supervise()
            now = time.monotonic()
            if now >= next_check:
                next_check = now + 2.0
                self._check_sessions()
            if now >= next_kill:
                next_kill = now + self._kill_gap()
                self._kill_one()
        seconds = time.monotonic() - started
        with self._lock:
            done = self.leases
        return self._finish(done, seconds)

    def _more_to_do(self) -> bool:
        """Leases are still owed, or a ``--kill-cycle`` has kinds not yet killed once (a fast
        machine would otherwise finish the quick run's leases before its controller kill)."""
        if self.leases < self.args.leases:
            return True
        return self._kills_made < len(set(self.args.kill_cycle)) if self.args.kill_cycle else False

    def _kill_gap(self) -> float:
        mean = self.args.kill_every
        return self.rng.uniform(mean * 0.25, mean * 1.75)

    def _start_controller(self) -> None:
        self.event("controller: start")
        self.controller.start()
        if not self.controller.ready.wait(60.0):
            self.hangs.append("controller: not ready 60 s after its start")
            self.controller.kill()
            raise RuntimeError(f"the controller did not start; see {self.controller.log}")
        self.controller_since = time.time()
        self.event("controller: ready")

    def _kill_one(self) -> None:
        roll = self.rng.random()
        if self.args.kill_cycle:  # each kind in turn, not at random
            kind = self.args.kill_cycle[self._kills_made % len(self.args.kill_cycle)]
            roll = {"client": 0.0, "exporter": self.args.client_share, "controller": 1.0}[kind]
        self._kills_made += 1
        if roll < self.args.client_share:
            idle = [w for w in self.workers if w.armed is None and w.alive()]
            if idle:
                step, most = self.rng.choice(sorted(_CLIENT_STEPS.items()))
                self.rng.choice(idle).arm(step, self.rng.uniform(0.0, most))
        elif roll < 1.0 - self.args.controller_share:
            proc = self.rng.choice(self.exporters)
            if proc.kill():
                self.kills["exporter"] += 1
                self.event(f"{proc.name}: killed")
        elif self.controller.kill():
            self.kills["controller"] += 1
            self.event("controller: killed")
            self._start_controller()

    def _supervise(self) -> None:
        if not self.controller.alive():
            if self.controller.reap():
                self.crashes.append(f"controller exited by itself: {self.controller.exits}")
            self._start_controller()
        now = time.monotonic()
        for proc in self.exporters:
            proc.reap()  # (exit 1: refused while its predecessor's agent had not timed out)
            if not proc.alive() and now - (proc.died_at or now) >= _RESTART_DELAY:
                self.event(f"{proc.name}: start")
                proc.start()
        for worker in self.workers:
            if worker.reap():
                self.crashes.append(f"{worker.name} exited by itself; see {worker.log}")
            if not worker.alive():
                worker.start()
                continue
            with worker.lock:
                late = now - worker.since - worker.bound
                phase, armed = worker.phase, worker.armed
            if late > _HANG_SLACK:
                self._hang(worker, phase, now - worker.since)
            elif armed is not None and now - worker.armed_at > 20.0:
                phase_killed = worker.kill_now()  # the step never came: kill it where it is
                if phase_killed is not None:
                    with self._lock:
                        self.kills[f"client in {phase_killed}"] += 1

    def _hang(self, worker: Worker, phase: str, seconds: float) -> None:
        """Record a hang with the worker's tracebacks, then kill it (it is restarted)."""
        before = worker.log.stat().st_size
        with contextlib.suppress(ProcessLookupError, AttributeError):
            assert worker.process is not None
            worker.process.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack
        time.sleep(2.0)
        with worker.log.open("rb") as log:
            log.seek(before)
            dump = log.read(20_000).decode(errors="replace")
        self.hangs.append(f"{worker.name}: step {phase!r} for {seconds:.0f} s\n{dump}")
        self.event(f"{worker.name}: hang in {phase} ({seconds:.0f} s)")
        worker.kill_now()

    def _check_sessions(self) -> None:
        for log in self.logs.values():
            log.read()
        rows = self.database.leases()
        found = _books.leaked_sessions(
            list(self.logs.values()), rows, LEAK_BOUND, self.controller_since
        )
        self.leaked.update(found)

    # -- the end ------------------------------------------------------------------------------

    def _finish(self, done: int, seconds: float) -> dict[str, Any]:
        for worker in self.workers:
            worker.kill_now()  # clients gone: their leases must end by themselves
        live_bound = self.args.duration + max(self.args.pending_timeout, self.args.claim_timeout)
        deadline = time.monotonic() + live_bound + 15.0
        while any(r.state in _books.LIVE for r in self.database.leases().values()):
            if time.monotonic() > deadline:
                break
            self._supervise_lab()
            time.sleep(0.5)
        # Then every session must close within the bound (exporters still running).
        deadline = time.monotonic() + LEAK_BOUND
        while time.monotonic() < deadline:
            self._supervise_lab()
            for log in self.logs.values():
                log.read()
            if not any(log.open for log in self.logs.values()):
                break
            time.sleep(0.5)
        rows = self.database.leases()
        for log in self.logs.values():
            for session, lease_id in log.open.items():
                state = rows[lease_id].state if lease_id in rows else "unknown"
                self.leaked.setdefault(
                    session,
                    f"{log.name}: session {session} of lease {lease_id} ({state}) open at the end",
                )
        stuck = [p.name for p in [*self.exporters, self.controller] if not p.stop(30.0)]
        self.hangs += [f"{name}: did not stop within 30 s of SIGTERM" for name in stuck]
        for log in self.logs.values():
            log.read()
        double = _books.double_grants(rows)
        double += [each for log in self.logs.values() for each in log.overlaps]
        missing = _books.unaccounted(self.holds, rows, self.logs)
        self.database.dispose()
        return {
            "leases": done,
            "target": self.args.leases,
            "seconds": round(seconds, 1),
            "leases_per_second": round(done / seconds, 3) if seconds else 0.0,
            "kills": dict(sorted(self.kills.items())),
            "kills_total": sum(self.kills.values()),
            "exporter_exits": {p.name: dict(p.exits) for p in self.exporters if p.exits},
            "client_errors": dict(self.errors.most_common()),
            "client_error_examples": self.error_examples,
            "leases_in_database": len(rows),
            "lease_ends": _books.ends(rows),
            "double_grants": len(double),
            "double_grant_examples": double[:5],
            "leaked_sessions": len(self.leaked),
            "leaked_examples": list(self.leaked.values())[:5],
            "duplicate_sessions": sum(len(log.duplicates) for log in self.logs.values()),
            "hangs": len(self.hangs),
            "hang_examples": self.hangs[:3],
            "unaccounted": len(missing),
            "unaccounted_examples": missing[:5],
            "crashes": len(self.crashes),
            "crash_examples": self.crashes[:5],
        }

    def _supervise_lab(self) -> None:
        """Keep the controller and the exporters up (the clients stay down)."""
        if not self.controller.alive():
            self._start_controller()
        now = time.monotonic()
        for proc in self.exporters:
            proc.reap()
            if not proc.alive() and now - (proc.died_at or now) >= _RESTART_DELAY:
                proc.start()
