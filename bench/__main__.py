"""``python -m bench``: tether, Jumpstarter 0.9 and raw sockets side by side, in one run.

Each part runs in its own subprocess with a time limit and prints one JSON object (see
``PARTS``): ``bench.raw_bench``, ``bench.tether_bench`` (in-process ``serve()``, the test kit),
``bench.remote_bench`` (an exporter process over TLS, the router relay, remote flashing) and
``bench.controller`` (5,000 exporters, 500 queued clients), ``bench.power_bench`` (SNMP and
Modbus ``on`` through tether vs pysnmp's and pymodbus's own clients), ``bench.ssh_bench`` (the
SSH driver against OpenSSH's ssh and scp on one sshd) in this venv, and
``bench.jumpstarter_bench`` in ``bench/.venv-jumpstarter`` (created on first run). Then the
table of figures, ratios and targets is printed and the results are written to
``bench/results/latest.json``.

Rounds: the parts that tether is compared with each other on (raw, jumpstarter, tether,
remote) run ``--rounds`` times (3; 1 with ``--quick``), alternating, each time in fresh
processes; every figure is the median of its rounds. A shared 2-core VM drifts by +-30% over
minutes and places a process's threads well or badly for its whole life, so one process per
peer measured at one moment can swing a ratio either way; alternating rounds cancel the drift
and the median of fresh processes samples the placement. ``controller`` runs once.

Options: ``--quick`` (smaller counts), ``--only raw,jumpstarter,...``, ``--plain`` (no rich),
``--strict`` (exit 1 when a target fails), ``--storage-mb N`` (else env BENCH_STORAGE_MB, 256),
``--rounds N``. Only 127.0.0.1 and unix sockets are used.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._peer_venv import ensure_jumpstarter_venv
from bench._report import build_rows, print_table, targets_as_data, write_json

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results"
#: Each part: the module run as ``python -m``, the table column its figures go to, its timeout.
PARTS: dict[str, tuple[str, str, float]] = {
    "raw": ("bench.raw_bench", "raw", 120.0),
    "jumpstarter": ("bench.jumpstarter_bench", "jumpstarter", 240.0),
    "tether": ("bench.tether_bench", "tether", 240.0),
    "remote": ("bench.remote_bench", "tether", 300.0),
    "controller": ("bench.controller", "tether", 480.0),
    "hostile": ("bench.hostile", "tether", 480.0),
    "power": ("bench.power_bench", "tether", 240.0),
    "ssh": ("bench.ssh_bench", "tether", 300.0),
    "boot": ("bench.boot_bench", "tether", 600.0),
    "netboot": ("bench.netboot_bench", "tether", 240.0),
}
TIMEOUTS = {name: timeout for name, (_, _, timeout) in PARTS.items()}
#: Parts run once, however many rounds: their targets are absolute, not ratios to a peer.
ONCE = {"controller", "hostile", "boot"}


def _merge_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One part's rounds as one result: numbers are medians, anything else from round one;
    ``round_results`` keeps every round's numbers."""
    good = [result for result in results if "error" not in result]
    if not good:
        return results[-1]
    merged = dict(good[0])
    for key, value in good[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            values = [r[key] for r in good if isinstance(r.get(key), int | float)]
            merged[key] = statistics.median(values)
    if len(good) > 1:
        merged["round_results"] = [
            {k: v for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)}
            for r in good
        ]
    return merged


def _run_part(name: str, command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run one part's module; its JSON result, or ``{"error": ...}``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    log = RESULTS / f"{name}.stderr.log"
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TIMEOUTS[name],
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        log.write_text(stderr)
        return {"error": f"timed out after {TIMEOUTS[name]:.0f} s (see {log})"}
    log.write_text(done.stderr)
    elapsed = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:  # a part that missed its own target still exits with its figures
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"error": f"exited {done.returncode} without a result: {tail} (see {log})"}
    try:
        result: dict[str, Any] = json.loads(lines[-1])
    except json.JSONDecodeError as exc:
        return {"error": f"unreadable result: {exc}"}
    result["seconds_total"] = elapsed
    return result


def _say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, for a smoke run")
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run: {', '.join(PARTS)}",
    )
    parser.add_argument("--plain", action="store_true", help="plain-text table")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--storage-mb", type=int, default=None, help="storage image size, MiB")
    parser.add_argument("--json", type=Path, default=RESULTS / "latest.json", help="results file")
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds of the compared parts (3; quick: 1)"
    )
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
    if rounds < 1:
        parser.error("--rounds must be at least 1")

    only = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = sorted(set(only) - set(PARTS))
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")

    load_at_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # Storage images and mux files go to RAM when it can hold them, for every peer alike: the
    # figures then compare the software, not this machine's disk write-back.
    if Path("/dev/shm").is_dir() and "TMPDIR" not in os.environ:
        env["TMPDIR"] = "/dev/shm"
    if args.storage_mb is not None:
        env["BENCH_STORAGE_MB"] = str(args.storage_mb)
    flags = ["--quick"] if args.quick else []
    parts: dict[str, dict[str, Any] | None] = dict.fromkeys(PARTS)
    messages: list[str] = []

    pythons: dict[str, str] = {}
    for name in only:
        pythons[name] = sys.executable
        if name == "jumpstarter":
            venv_python, message = ensure_jumpstarter_venv()
            messages.append(f"jumpstarter: {message}")
            if venv_python is None:
                _say(message)
                parts[name] = {"error": message}
                del pythons[name]
            else:
                pythons[name] = str(venv_python)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in pythons}
    for round_number in range(1, rounds + 1):
        for name, (module, _column, _timeout) in PARTS.items():
            if name not in pythons or (name in ONCE and round_number > 1):
                continue
            step = f" (round {round_number}/{rounds})" if rounds > 1 and name not in ONCE else ""
            _say(f"running {name}{' (quick)' if args.quick else ''}{step} ...")
            results[name].append(_run_part(name, [pythons[name], "-m", module, *flags], env))
    for name, runs in results.items():
        parts[name] = _merge_rounds(runs)

    columns: dict[str, dict[str, Any]] = {}
    for name, part in parts.items():
        if part and "error" not in part:
            columns.setdefault(PARTS[name][1], {}).update(part)
    rows = build_rows(columns)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    title = (
        f"tether bench ({'quick' if args.quick else 'full'}) | Python "
        f"{platform.python_version()} | {os.cpu_count()} cores | {rounds} round(s)"
        + (f" | load {load[0]:.2f}" if load else "")
    )
    print_table(rows, title=title, plain=args.plain)
    if load_at_start is not None and load_at_start > 0.5:
        print(
            f"  note: load average was {load_at_start:.2f} at the start: other work is running,"
            " so latencies (raw ping-pong most of all) may be several times their idle value."
        )
    storage_mib = next((p["storage_mib"] for p in parts.values() if p and "storage_mib" in p), None)
    print(
        "  vs js / vs raw: how many times better tether is (lower latency, higher throughput);"
        " targets: the ratio required."
        + (f" Storage image: {storage_mib} MiB." if storage_mib else "")
    )

    controller = parts.get("controller")
    if controller and "exporters" in controller:
        print(
            f"  controller: {controller['exporters']:,} exporters heartbeating,"
            f" {controller['waiting_clients']:,} clients waiting in the queue, SQLite, TLS"
        )
    for name, part in parts.items():
        if part is None:
            continue
        if "error" in part:
            print(f"  {name}: {part['error']}")
        for note in part.get("notes", []):
            print(f"  {name}: {note}")
        if part.get("versions"):
            pinned = ", ".join(f"{k} {v}" for k, v in part["versions"].items())
            print(f"  {name} versions: {pinned}")

    verdicts = [v["pass"] for row in rows for v in row["targets"]]
    payload = {
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "loadavg_start": load_at_start,
            "loadavg_end": load,
        },
        "quick": args.quick,
        "rounds": rounds,
        "parts": parts,
        "messages": messages,
        "targets": targets_as_data(),
        "rows": rows,
        "targets_passed": verdicts.count(True),
        "targets_failed": verdicts.count(False),
        "targets_unknown": verdicts.count(None),
    }
    write_json(args.json, payload)
    print(f"  results: {args.json}")
    if args.strict and False in verdicts:
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
