"""``make soak``: its books find what they look for (double grants in the database and in an
exporter's log, sessions left open after their lease, leases nobody can explain), and its
quick mode (about 20 leases with kills of clients, exporters and the controller) passes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository's bench package

from bench.soak._books import (
    ExporterLog,
    LeaseRow,
    double_grants,
    leaked_sessions,
    unaccounted,
)
from bench.soak._procs import LIFE_MARK

REPO = Path(__file__).resolve().parents[1]


def test_overlapping_grants_in_the_database_are_double_grants() -> None:
    rows = {
        "a": LeaseRow("a", "ended", 10.0, 20.0, "released", ["e1"]),
        "b": LeaseRow("b", "expired", 19.0, 30.0, "expired", ["e1"]),  # starts before a ends
        "c": LeaseRow("c", "ended", 12.0, 25.0, "released", ["e2"]),  # another exporter
        "d": LeaseRow("d", "ended", 30.0, 31.0, "released", ["e1"]),  # right after b
        "p": LeaseRow("p", "ended", None, 15.0, "the client stopped polling", ["e1"]),
    }
    assert double_grants(rows) == ["e1: leases a and b overlap (database)"]
    rows["live"] = LeaseRow("live", "ready", 40.0, None, None, ["e2"])
    rows["late"] = LeaseRow("late", "ready", 50.0, None, None, ["e2"])  # live has no end
    assert double_grants(rows)[1:] == ["e2: leases live and late overlap (database)"]


def test_two_leases_with_sessions_open_at_once_on_an_exporter_are_double_grants(
    tmp_path: Path,
) -> None:
    path = tmp_path / "exporter.log"
    path.write_text(
        f"{LIFE_MARK} 100.0\n"
        "x INFO tether.exporter: session S1 opened for lease L1\n"
        "x INFO tether.exporter: session S1 closed\n"
        "x INFO tether.exporter: session S2 opened for lease L2\n"
        "x INFO tether.exporter: session S3 opened for lease L3\n"  # S2 still open
        f"{LIFE_MARK} 200.0\n"  # killed: S2 and S3 died with it
        "x INFO tether.exporter: session S4 opened for lease L4\n"
        "x INFO tether.exporter: sess"  # half a line: read on the next call
    )
    log = ExporterLog("e1", path)
    log.read()
    assert len(log.overlaps) == 1
    assert "S3 of lease L3" in log.overlaps[0] and "lease L2 had a session" in log.overlaps[0]
    assert log.open == {"S4": "L4"} and log.life_started == 200.0
    with path.open("a") as more:
        more.write("ion S4 closed\n")
    log.read()
    assert log.open == {} and log.sessions["S4"] == "L4"


def test_a_session_open_long_after_its_lease_ended_is_leaked(tmp_path: Path) -> None:
    path = tmp_path / "exporter.log"
    path.write_text(
        f"{LIFE_MARK} 0.0\nsession S1 opened for lease L1\nsession S2 opened for lease L2\n"
    )
    log = ExporterLog("e1", path)
    log.read()
    now = time.time()
    rows = {
        "L1": LeaseRow("L1", "expired", now - 100, now - 60, "expired", ["e1"]),
        "L2": LeaseRow("L2", "ended", now - 20, now - 10, "released", ["e1"]),
    }
    assert list(leaked_sessions([log], rows, 45.0, since=0.0)) == ["S1"]
    # Nothing is a leak while the controller (which tells exporters) was down until lately.
    assert leaked_sessions([log], rows, 45.0, since=now - 5) == {}
    # A session serving a lease granted to another exporter is reported at once.
    rows["L2"] = LeaseRow("L2", "ready", now - 20, None, None, ["e2"])
    assert "serves L2" in leaked_sessions([log], rows, 45.0, since=now)["S2"]


def test_a_lease_held_but_not_granted_or_not_served_is_unaccounted(tmp_path: Path) -> None:
    path = tmp_path / "exporter.log"
    path.write_text(f"{LIFE_MARK} 0.0\nsession S1 opened for lease L1\nsession S1 closed\n")
    log = ExporterLog("e1", path)
    log.read()
    rows = {"L1": LeaseRow("L1", "ended", 1.0, 2.0, "released", ["e1"])}
    hold = {"worker": "w", "exporter": "e1", "served_by": "e1", "session": "S1"}
    assert unaccounted({"L1": hold}, rows, {"e1": log}) == []
    wrong = {**hold, "served_by": "e2", "session": "S9"}
    found = unaccounted({"L1": wrong, "L2": hold}, rows, {"e1": log})
    assert len(found) == 4  # served by e2, no session S9; L2 never granted, nor in the log
    rows["L3"] = LeaseRow("L3", "pending", None, None, None, [])
    assert unaccounted({}, rows, {"e1": log}) == ["L3: still pending with every client gone"]


def test_the_quick_soak_passes_with_clients_an_exporter_and_the_controller_killed(
    tmp_path: Path,
) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--quick", "--keep", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["leases"] >= 20, result
    kills = result["kills"]
    assert kills.get("exporter") and kills.get("controller"), result
    assert sum(n for kind, n in kills.items() if kind.startswith("client")) > 0, result
    for key in ("double_grants", "leaked_sessions", "hangs", "unaccounted", "crashes"):
        assert result[key] == 0, result
    assert result["leases_in_database"] >= result["leases"]
    assert time.monotonic() - started < 120
