"""``python -m bench.soak`` (``make soak``; not in CI): kill -9 at random over 1,000 leases.

A controller (with its relay; SQLite, or ``--database postgresql``), ``--exporters`` exporter
agents and ``--clients`` long-lived client workers, every one a real process on loopback.
Each worker (``_worker.py``) leases an exporter with ``tether.lease``, calls it through the
relay (``power.on``, a streamed ``power.read``) and releases it, in a loop; more workers than
exporters, so requests queue. Meanwhile, every ``--kill-every`` seconds on average, one
process gets SIGKILL: a worker in a chosen step (before its grant, while it waits in the
queue, while it holds the lease, in the middle of a call), an exporter, or the controller.
Whatever dies is started again (an exporter a second later, as systemd would). The run ends
after ``--leases`` completed leases or ``--max-seconds``; then the workers are killed, the
lab must end their leases and close their sessions by itself, and the books are checked
(``_books.py``):

* **double grants**: two leases of one exporter at one moment, in the database or in what
  the exporter saw (two leases' sessions open at once in its log);
* **leaked sessions**: a session open on an exporter 45 s after its lease ended (checked
  every 2 s during the run, and at the end);
* **hangs**: a worker step that outlives its bound (its tracebacks are dumped and kept), a
  controller not ready within 60 s, a process that does not stop within 30 s of SIGTERM;
* **unaccounted** leases: a lease a worker held that the database did not grant to the
  exporter that served it, or that the exporter's log does not show; a lease still live;
* **crashes**: a worker or the controller exiting by itself (an error that was not a
  ``TetherError``), and fewer leases than asked for.

Every one must be 0. Prints a summary and one JSON line; exits 1 on any failure.
``--quick`` is a ~20-lease run for the test suite (it kills an exporter, a client, the
controller, then clients, in that order: ``--kill-cycle``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

FAILURES = ("double_grants", "leaked_sessions", "hangs", "unaccounted", "crashes")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    add = parser.add_argument
    add("--leases", type=int, default=1000, help="completed leases to reach (1000)")
    add("--max-seconds", type=float, default=1800.0, help="stop after this long (1800)")
    add("--exporters", type=int, default=4)
    add("--clients", type=int, default=8)
    add("--database", choices=("sqlite", "postgresql"), default="sqlite")
    add("--kill-every", type=float, default=4.0, help="mean seconds between kills (4)")
    add("--client-share", type=float, default=0.7, help="share of kills aimed at clients")
    add("--controller-share", type=float, default=0.05, help="share aimed at the controller")
    add("--duration", type=float, default=5.0, help="seconds each lease is asked for")
    add("--claim-timeout", type=float, default=3.0, help="the controller's claim_timeout")
    add("--pending-timeout", type=float, default=6.0, help="its pending_poll_timeout")
    add("--kill-cycle", default="", help="kinds to kill in turn (client,exporter,controller)")
    add("--seed", type=int, default=12)
    add("--keep", type=Path, default=None, help="keep the logs in this directory")
    add("--quick", action="store_true", help="20 leases, 2 exporters, 4 clients, 50 s at most")
    args = parser.parse_args(argv)
    if args.quick:
        args.leases, args.max_seconds, args.exporters, args.clients = 20, 50.0, 2, 4
        args.kill_every, args.duration = 4.0, 3.0
        args.kill_cycle = "exporter,client,controller" + ",client" * 7
        args.claim_timeout, args.pending_timeout = 2.0, 3.0
    if args.kill_every < 0.5:
        parser.error("--kill-every must be at least 0.5 s")
    cycle = [kind for kind in args.kill_cycle.split(",") if kind]
    if any(kind not in ("client", "exporter", "controller") for kind in cycle):
        parser.error("--kill-cycle takes client, exporter and controller")
    args.kill_cycle = cycle
    return args


def failures(result: dict[str, Any]) -> list[str]:
    """What went wrong (empty: the run passed)."""
    bad = [f"{key} {result[key]}" for key in FAILURES if result[key]]
    if result["leases"] < result["target"]:
        bad.append(f"only {result['leases']} of {result['target']} leases")
    return bad


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ._lab import Soak, scratch_database

    for key in [key for key in os.environ if key.startswith("TETHER_")]:
        del os.environ[key]  # every process finds its settings in its own files
    with tempfile.TemporaryDirectory(prefix="tether-soak-") as scratch:
        tmp = args.keep or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        with scratch_database(args.database, tmp) as url:
            result = Soak(tmp, url, args).run()
    result["database"] = args.database
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    kills = ", ".join(f"{n} {kind}" for kind, n in result["kills"].items())
    print(
        f"{result['leases']} leases in {result['seconds']:.0f} s "
        f"({result['leases_per_second']:.2f}/s, {result['database']}); "
        f"{result['kills_total']} kills ({kills}); double grants {result['double_grants']}, "
        f"leaked sessions {result['leaked_sessions']}, hangs {result['hangs']}, "
        f"unaccounted {result['unaccounted']}, crashes {result['crashes']} (all must be 0)"
    )
    print(json.dumps(result, sort_keys=True))
    bad = failures(result)
    if bad:
        print("FAILED: " + "; ".join(bad), file=sys.stderr)
    sys.exit(1 if bad else 0)
