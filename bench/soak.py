"""``python -m bench.soak`` (``make soak``; not in CI): kill -9 at random over many leases.

A controller (with its relay), ``--exporters`` exporter agents and ``--clients`` client
workers, every one a real process on loopback. Each client worker leases an exporter
(``tether.lease``), drives it (``power.on``) and releases it, over and over. Meanwhile, at
random moments, one process is killed with SIGKILL (a client worker most often, else an
exporter, now and then the controller) and started again. The run ends after ``--leases``
successful leases (1,000 by default), then every process stops cleanly and the books are
checked:

* **double grants**: two leases of one exporter whose granted times overlap (from the
  controller's database, across its restarts);
* **leaked sessions**: an exporter still alive at the end with a session its lease does not
  explain (its log's ``session ... opened`` lines against its ``closed`` lines), or a live
  lease once every client is gone and the unclaimed/expiry timers ran;
* **hangs**: a client worker that made no progress (no lease, no error) for ``--hang``
  seconds, or a process that did not stop within 30 s.

All three must be 0. Prints a summary and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CLIENT = r"""
import sys, time, tether
from tether.errors import TetherError
config = sys.argv[1]
while True:
    try:
        with tether.lease(selector="soak=1", duration=20, config=config, timeout=15) as dut:
            dut.power.on()
            print("ok", dut.session.lease.id, flush=True)
    except (TetherError, OSError) as exc:
        print("error", type(exc).__name__, str(exc).replace("\n", " ")[:200], flush=True)
        time.sleep(0.2)
"""

_EXPORT = """
export:
  power: {type: tether.drivers.power.MockPower}
"""


@dataclass
class Proc:
    """One supervised child: how to start it, its process, when it last made progress."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[str] | None = None
    progress: float = field(default_factory=time.monotonic)
    kills: int = 0
    opened: int = 0
    closed: int = 0

    def start(self) -> None:
        out = self.log.open("a")
        out.write("=== tether soak: started\n")  # where this life's log begins
        out.flush()
        self.process = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=out,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("TETHER_")},
        )
        out.close()
        self.progress = time.monotonic()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.kills += 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Soak:
    """The supervised lab and its books."""

    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
        from tether.controller import Admin, Database
        from tether.exporter import init_lab_certs

        self.tmp = tmp
        self.args = args
        self.rng = random.Random(args.seed)
        certs = init_lab_certs(tmp / "certs", overwrite=True)
        self.database_url = f"sqlite:///{tmp / 'controller.db'}"
        port, relay_port = _free_port(), _free_port()
        self.url = f"https://127.0.0.1:{port}"
        self.controller = Proc(
            "controller",
            [
                sys.executable, "-c", "from tether.cli import main; main()",
                "controller", "serve",
                "--listen", self.url,
                "--relay-listen", f"tls://127.0.0.1:{relay_port}",
                "--database", self.database_url,
                "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
                "--heartbeat-interval", "1", "--heartbeat-timeout", "3",
                "--limit", "claim_timeout=10", "--limit", "pending_poll_timeout=30",
            ],
            tmp / "controller.log",
        )  # fmt: skip
        database = Database(self.database_url)
        database.migrate()
        admin = Admin(database)
        self.exporters: list[Proc] = []
        for i in range(args.exporters):
            issued = admin.create_exporter(f"soak-{i}", {"soak": "1"})
            path = tmp / f"exporter-{i}.yaml"
            path.write_text(issued.config(self.url, certs.ca) + _EXPORT)
            argv = [sys.executable, "-c", "from tether.cli import main; main()"]
            argv += ["exporter", "serve", str(path)]
            self.exporters.append(Proc(f"soak-{i}", argv, tmp / f"exporter-{i}.log"))
        self.clients: list[Proc] = []
        for i in range(args.clients):
            issued = admin.create_client(f"client-{i}")
            path = tmp / f"client-{i}.yaml"
            path.write_text(issued.config(self.url, certs.ca))
            argv = [sys.executable, "-c", _CLIENT, str(path)]
            self.clients.append(Proc(f"client-{i}", argv, tmp / f"client-{i}.log"))
        database.dispose()
        self.leases = 0
        self.errors: dict[str, int] = {}
        self.hangs: list[str] = []
        self._lock = threading.Lock()

    # -- running ------------------------------------------------------------------------

    def _start_controller(self) -> None:
        self.controller.start()
        assert self.controller.process is not None and self.controller.process.stdout
        line = self.controller.process.stdout.readline()
        if "ready" not in line:
            raise RuntimeError(f"the controller did not start: {line!r}")

    def _watch(self, proc: Proc) -> None:
        """Read a client's lines: count leases and errors, note progress."""
        process = proc.process
        assert process is not None and process.stdout is not None
        for line in process.stdout:
            with proc.log.open("a") as out:
                out.write(line)
            with self._lock:
                proc.progress = time.monotonic()
                if line.startswith("ok "):
                    self.leases += 1
                else:
                    kind = line.split()[1] if len(line.split()) > 1 else "?"
                    self.errors[kind] = self.errors.get(kind, 0) + 1

    def _start_client(self, proc: Proc) -> None:
        proc.start()
        threading.Thread(target=self._watch, args=(proc,), daemon=True).start()

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        self._start_controller()
        for proc in self.exporters:
            proc.start()
        for proc in self.clients:
            self._start_client(proc)
        next_kill = time.monotonic() + self.rng.uniform(1.0, self.args.kill_every * 2 - 1.0)
        while self.leases < self.args.leases:
            time.sleep(0.1)
            now = time.monotonic()
            if now - started > self.args.max_seconds:
                break
            for proc in self.clients:
                if now - proc.progress > self.args.hang:
                    self.hangs.append(f"{proc.name}: no progress for {self.args.hang:g} s")
                    proc.kill()
                    self._start_client(proc)
            if now >= next_kill:
                next_kill = now + self.rng.uniform(1.0, self.args.kill_every * 2 - 1.0)
                self._kill_one()
        return self._finish(time.monotonic() - started)

    def _kill_one(self) -> None:
        roll = self.rng.random()
        if roll < 0.7:
            proc = self.rng.choice(self.clients)
            proc.kill()
            self._start_client(proc)
        elif roll < 0.95:
            proc = self.rng.choice(self.exporters)
            proc.kill()
            proc.start()
        else:
            self.controller.kill()
            self._start_controller()

    # -- the books ------------------------------------------------------------------------

    def _finish(self, seconds: float) -> dict[str, Any]:
        for proc in self.clients:
            proc.kill()  # clients gone: their leases must end by themselves
        live = self._wait_no_live_leases(timeout=60)
        stuck: list[str] = []
        for proc in [*self.exporters, self.controller]:
            if proc.process is not None and proc.process.poll() is None:
                proc.process.send_signal(signal.SIGTERM)
                try:
                    proc.process.wait(30)
                except subprocess.TimeoutExpired:
                    stuck.append(proc.name)
                    proc.kill()
        leaked = self._leaked_sessions()
        double = self._double_grants()
        return {
            "leases": self.leases,
            "seconds": seconds,
            "kills": {
                "client": sum(p.kills for p in self.clients),
                "exporter": sum(p.kills for p in self.exporters),
                "controller": self.controller.kills,
            },
            "client_errors": self.errors,
            "double_grants": len(double),
            "double_grant_examples": double[:5],
            "leaked_sessions": leaked + live,
            "open_sessions_at_end": leaked,
            "live_leases_at_end": live,
            "hangs": len(self.hangs) + len(stuck),
            "hang_examples": (self.hangs + stuck)[:5],
        }

    def _rows(self, query: str) -> list[Any]:
        import sqlite3

        path = self.database_url.removeprefix("sqlite:///")
        with sqlite3.connect(path, timeout=30) as conn:
            return list(conn.execute(query))

    def _wait_no_live_leases(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            live = self._rows("SELECT count(*) FROM leases WHERE state IN ('pending', 'ready')")
            if live[0][0] == 0 or time.monotonic() > deadline:
                return int(live[0][0])
            time.sleep(0.5)

    def _double_grants(self) -> list[str]:
        rows = self._rows(
            "SELECT e.exporter, l.id, l.granted_at, COALESCE(l.ended_at, 1e18) "
            "FROM leases l JOIN lease_exporters e ON e.lease_seq = l.seq "
            "WHERE l.granted_at IS NOT NULL ORDER BY e.exporter, l.granted_at"
        )
        found: list[str] = []
        last: dict[str, tuple[str, float]] = {}
        for exporter, lease_id, granted, ended in rows:
            previous = last.get(exporter)
            if previous is not None and granted < previous[1] - 1e-6:
                found.append(f"{exporter}: {previous[0]} and {lease_id} overlap")
            if previous is None or ended > previous[1]:
                last[exporter] = (lease_id, ended)
        return found

    def _leaked_sessions(self) -> int:
        """Sessions an exporter opened and never closed, in its last life (a killed one's
        sessions died with it)."""
        leaked = 0
        for proc in self.exporters:
            text = proc.log.read_text(errors="replace")
            last_life = text.rsplit("=== tether soak: started", 1)[-1]
            opened = set(re.findall(r"session (\S+) opened", last_life))
            closed = set(re.findall(r"session (\S+) closed", last_life))
            leaked += len(opened - closed)
        return leaked


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--leases", type=int, default=1000)
    parser.add_argument("--exporters", type=int, default=3)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--hang", type=float, default=90.0, help="seconds without progress")
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--kill-every", type=float, default=4.0, help="mean seconds, >= 1")
    parser.add_argument("--keep", type=Path, default=None, help="keep logs in this directory")
    args = parser.parse_args()
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = Soak(args.keep, args).run()
    else:
        with tempfile.TemporaryDirectory(prefix="tether-soak-") as tmp:
            result = Soak(Path(tmp), args).run()
    print(
        f"{result['leases']} leases in {result['seconds']:.0f} s; kills {result['kills']}; "
        f"double grants {result['double_grants']}, leaked sessions "
        f"{result['leaked_sessions']}, hangs {result['hangs']} (all must be 0)"
    )
    print(json.dumps(result, sort_keys=True))
    bad = result["double_grants"] or result["leaked_sessions"] or result["hangs"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
