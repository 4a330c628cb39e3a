"""Statistics, the comparison table, targets, and the JSON results file.

Standard library only at import time (``bench.jumpstarter_bench`` uses the statistics helpers in
the Jumpstarter venv); ``rich`` is imported lazily when the table is printed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "COLUMNS",
    "ROWS",
    "TARGETS",
    "Row",
    "Target",
    "build_rows",
    "median",
    "percentile",
    "print_table",
    "time_calls",
    "write_json",
]

COLUMNS = ("tether", "jumpstarter", "raw")


# -- statistics -------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between ranks (numpy's default).

    Raises:
        ValueError: ``values`` is empty.
    """
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def time_calls(
    fn: Callable[[], object], *, count: int, seconds: float, warmup: int = 20
) -> dict[str, float]:
    """Call ``fn`` up to ``count`` times or for ``seconds``, whichever ends first.

    Returns ``p50_us``, ``p99_us``, ``mean_us``, ``per_s`` (calls per wall-clock second of the
    timed loop) and ``n``.
    """
    for _ in range(warmup):
        fn()
    clock = time.perf_counter_ns
    samples: list[float] = []
    deadline = clock() + int(seconds * 1e9)
    start = clock()
    for _ in range(count):
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) / 1e3)
        if t1 >= deadline:
            break
    wall = (clock() - start) / 1e9
    return {
        "p50_us": percentile(samples, 50),
        "p99_us": percentile(samples, 99),
        "mean_us": sum(samples) / len(samples),
        "per_s": len(samples) / wall if wall > 0 else 0.0,
        "n": float(len(samples)),
    }


# -- what is compared -------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One line of the table.

    ``key`` is the metric in each part's results; ``jumpstarter_key`` / ``raw_key`` name the
    metric compared against in those columns when it differs (``None``: same key).
    """

    key: str
    label: str
    unit: str
    lower_is_better: bool
    jumpstarter_key: str | None = None
    raw_key: str | None = None

    def key_for(self, column: str) -> str:
        if column == "jumpstarter" and self.jumpstarter_key:
            return self.jumpstarter_key
        if column == "raw" and self.raw_key:
            return self.raw_key
        return self.key


@dataclass(frozen=True)
class Target:
    """tether's ``row`` must be at least ``factor`` times better than ``against``'s value.

    "Better" is the row's direction: for a latency, ``factor=8`` means 8x lower; for a
    throughput, ``factor=0.5`` means at least half.
    """

    row: str
    against: str
    factor: float
    text: str

    def ratio(
        self, row: Row, ours: float | None, columns: Mapping[str, float | None]
    ) -> float | None:
        """How many times better than required-against tether is (``None``: not measured).

        ``against`` is a column (``"jumpstarter"``, ``"raw"``) or ``"absolute"``, for which
        ``factor`` is the value itself to reach (so the verdict compares the ratio with 1).
        """
        if self.against == "absolute":
            return _ratio(row, ours, self.factor)
        return _ratio(row, ours, columns.get(self.against))

    @property
    def required(self) -> float:
        return 1.0 if self.against == "absolute" else self.factor


ROWS: tuple[Row, ...] = (
    Row("call_p50_us", "call p50 (raw: TCP ping-pong)", "us", lower_is_better=True),
    Row("call_p99_us", "call p99 (raw: TCP ping-pong)", "us", lower_is_better=True),
    Row("calls_per_s", "calls/s, one caller", "1/s", lower_is_better=False),
    Row("call_p50_us_unix", "ping-pong p50, unix socketpair", "us", lower_is_better=True),
    Row("stream_call_p50_us", "streaming call p50 (2 items)", "us", lower_is_better=True),
    Row("stream_items_per_s", "streaming call items/s", "1/s", lower_is_better=False),
    Row(
        "bytes_mb_s",
        "byte stream, TcpNetwork (raw: relay)",
        "MB/s",
        lower_is_better=False,
        raw_key="relay_mb_s",
    ),
    Row("bulk_mb_s", "bulk 64 KiB sendall", "MB/s", lower_is_better=False),
    Row("serve_call_ms", "serve() + call + teardown", "ms", lower_is_better=True),
    Row(
        "dut_start_call_stop_ms",
        "DriverUnderTest start+call+stop (js: serve+call)",
        "ms",
        lower_is_better=True,
        jumpstarter_key="serve_call_ms",
    ),
    Row("storage_mb_s", "storage mux image write", "MB/s", lower_is_better=False),
    Row(
        "tls_call_p50_us",
        "call p50, exporter process over TLS (js: local)",
        "us",
        lower_is_better=True,
        jumpstarter_key="call_p50_us",
        raw_key="call_p50_us",
    ),
    Row(
        "tls_stream_mb_s",
        "byte stream, exporter process over TLS (js: local)",
        "MB/s",
        lower_is_better=False,
        jumpstarter_key="bytes_mb_s",
        raw_key="relay_mb_s",
    ),
    Row(
        "storage_tls_mb_s",
        "storage write, exporter over TLS (js: local)",
        "MB/s",
        lower_is_better=False,
        jumpstarter_key="storage_mb_s",
    ),
    Row("direct_call_p50_us", "call p50, direct TLS (relay baseline)", "us", True),
    Row("relay_call_p50_us", "call p50 through the router relay", "us", True),
    Row("relay_call_ratio", "relay / direct call p50", "x", lower_is_better=True),
    Row("direct_bytes_mb_s", "byte stream, direct TLS (relay baseline)", "MB/s", False),
    Row("relay_bytes_mb_s", "byte stream through the router relay", "MB/s", False),
    Row("relay_bytes_ratio", "relay / direct byte stream", "x", lower_is_better=False),
    Row("grant_p50_ms", "controller: lease grant p50, queue full (see note)", "ms", True),
    Row("handoff_p50_ms", "controller: release -> next in queue ready, p50", "ms", True),
    Row("heartbeats_per_s", "controller: heartbeats/s sustained", "1/s", False),
    Row("dashboard_first_screen_ms", "dashboard: first screen in Chromium, full lab", "ms", True),
    Row("dashboard_update_max_ms", "dashboard: grant -> open page, slowest", "ms", True),
    Row("metrics_scrape_p50_ms", "controller: /metrics scrape p50, full lab", "ms", True),
    Row("grant_with_dashboard_p50_ms", "controller: grant p50, page open + scrapes", "ms", True),
    Row("hostile_call_ratio_max", "controller: worst flood / idle call p50", "x", True),
    Row("hostile_rss_over_idle_mb_max", "controller: worst flood RSS over idle", "MB", True),
    Row("hostile_exporter_call_ratio_max", "exporter: worst flood / idle call p50", "x", True),
    Row("hostile_exporter_rss_over_idle_mb_max", "exporter: worst flood RSS over idle", "MB", True),
    Row("snmp_serve_on_p50_us", "SNMP on p50, tether serve() -> snmpd", "us", True),
    Row("snmp_on_p50_us", "SNMP on p50, tether TLS exporter -> snmpd", "us", True),
    Row("snmp_direct_on_p50_us", "SNMP on p50, pysnmp set_cmd -> snmpd", "us", True),
    Row("snmp_on_ratio", "SNMP on: tether serve() / pysnmp", "x", lower_is_better=True),
    Row("snmp_tls_on_ratio", "SNMP on: tether TLS exporter / pysnmp", "x", True),
    Row("modbus_serve_on_p50_us", "Modbus on p50, tether serve() -> pymodbus server", "us", True),
    Row("modbus_on_p50_us", "Modbus on p50, tether TLS exporter -> server", "us", True),
    Row("modbus_direct_on_p50_us", "Modbus on p50, pymodbus client -> server", "us", True),
    Row("modbus_on_ratio", "Modbus on: tether serve() / pymodbus", "x", lower_is_better=True),
    Row("modbus_tls_on_ratio", "Modbus on: tether TLS exporter / pymodbus", "x", True),
    Row("ssh_run_p50_ms", "ssh run('true') p50 through a TLS exporter", "ms", True),
    Row("openssh_run_p50_ms", "ssh run('true') p50, OpenSSH ssh + ControlMaster", "ms", True),
    Row("ssh_run_ratio", "ssh run: tether / OpenSSH ControlMaster", "x", lower_is_better=True),
    Row("ssh_put_mb_s", "SFTP put 64 MiB through a TLS exporter", "MB/s", False),
    Row("scp_put_mb_s", "scp 64 MiB, same sshd (ControlMaster)", "MB/s", False),
    Row("ssh_put_ratio", "SFTP put: tether / scp", "x", lower_is_better=False),
    Row("boot_transition_s", "U-Boot board: transition shell from off", "s", True),
    Row("boot_expect_s", "U-Boot board: the same boot by an expect script", "s", True),
    Row("boot_ratio", "transition shell / expect script", "x", lower_is_better=True),
    Row("tftp_tether_mb_s", "TFTP 32 MiB, curl, blksize 1468: tether", "MB/s", False),
    Row("tftp_hpa_mb_s", "TFTP 32 MiB, curl, blksize 1468: tftpd-hpa", "MB/s", False),
    Row("tftp_ratio", "TFTP tether / tftpd-hpa (median of rounds)", "x", lower_is_better=False),
    Row("tftp_tether_cpu_us_per_block", "TFTP tether: server CPU per block", "us", True),
    Row("fanout_one_mb_s", "console 8 MiB, one reader", "MB/s", False),
    Row("fanout_two_mb_s", "console 8 MiB, each of two readers", "MB/s", False),
    Row("fanout_ratio", "console two readers / one", "x", lower_is_better=False),
)

TARGETS: tuple[Target, ...] = (
    Target("call_p50_us", "jumpstarter", 15.0, "call p50 >= 15x lower than Jumpstarter"),
    Target("call_p50_us", "raw", 0.5, "call p50 within 2x of raw ping-pong"),
    Target("bytes_mb_s", "jumpstarter", 6.0, "byte stream >= 6x Jumpstarter"),
    Target("bytes_mb_s", "raw", 0.5, "byte stream >= 50% of the raw relay"),
    Target("serve_call_ms", "jumpstarter", 4.0, "serve()+call >= 4x cheaper than Jumpstarter"),
    Target(
        "dut_start_call_stop_ms",
        "jumpstarter",
        50.0,
        "DriverUnderTest start-call-stop >= 50x cheaper than Jumpstarter serve()+call",
    ),
    Target(
        "tls_call_p50_us", "jumpstarter", 8.0, "TLS exporter call p50 >= 8x lower than js local"
    ),
    Target("tls_stream_mb_s", "jumpstarter", 4.0, "TLS exporter byte stream >= 4x js local"),
    Target("storage_tls_mb_s", "absolute", 200.0, "remote TLS flash of 256 MiB >= 200 MB/s"),
    Target("relay_call_ratio", "absolute", 2.0, "relay call p50 within 2x of direct"),
    Target("relay_bytes_ratio", "absolute", 0.6, "relay byte stream >= 60% of direct"),
    Target("grant_p50_ms", "absolute", 50.0, "lease grant p50 < 50 ms with 500 queued"),
    Target("dashboard_first_screen_ms", "absolute", 1000.0, "dashboard first screen < 1 s"),
    Target("dashboard_update_max_ms", "absolute", 1000.0, "a grant on an open page < 1 s"),
    Target("metrics_scrape_p50_ms", "absolute", 50.0, "/metrics scrape < 50 ms"),
    Target("grant_with_dashboard_p50_ms", "absolute", 50.0, "grant p50 < 50 ms, page open"),
    Target("hostile_call_ratio_max", "absolute", 3.0, "under each flood, call p50 <= 3x idle"),
    Target("hostile_rss_over_idle_mb_max", "absolute", 200.0, "under each flood, RSS +200 MB"),
    Target(
        "hostile_exporter_call_ratio_max", "absolute", 3.0, "exporter floods: call p50 <= 3x idle"
    ),
    Target(
        "hostile_exporter_rss_over_idle_mb_max", "absolute", 200.0, "exporter floods: RSS +200 MB"
    ),
    Target("snmp_on_ratio", "absolute", 2.0, "SNMP on p50 (serve) within 2x of pysnmp direct"),
    Target("modbus_on_ratio", "absolute", 2.0, "Modbus on p50 (serve) within 2x of pymodbus"),
    Target("ssh_run_ratio", "absolute", 1.5, "ssh run('true') within 1.5x of OpenSSH -M"),
    Target("ssh_put_ratio", "absolute", 0.7, "SFTP put 64 MiB >= 70% of scp"),
    Target("boot_ratio", "absolute", 1.10, "transition shell within 10% of an expect script"),
    Target("tftp_ratio", "absolute", 0.8, "TFTP >= 80% of tftpd-hpa, same client and blksize"),
    Target("fanout_ratio", "absolute", 0.5, "console fan-out: two readers >= 50% of one"),
)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if math.isnan(value) or math.isinf(value):
        return None
    return float(value)


def _ratio(row: Row, ours: float | None, theirs: float | None) -> float | None:
    """How many times better tether is than ``theirs`` (>1: tether better)."""
    if ours is None or theirs is None or ours <= 0 or theirs <= 0:
        return None
    return theirs / ours if row.lower_is_better else ours / theirs


def build_rows(
    parts: Mapping[str, Mapping[str, Any] | None],
    rows: Sequence[Row] = ROWS,
    targets: Sequence[Target] = TARGETS,
) -> list[dict[str, Any]]:
    """One dict per row: values per column, ratios, and each target's verdict."""
    out: list[dict[str, Any]] = []
    for row in rows:
        values = {
            column: _number((parts.get(column) or {}).get(row.key_for(column)))
            for column in COLUMNS
        }
        if all(v is None for v in values.values()):
            continue
        ratios = {
            column: _ratio(row, values["tether"], values[column])
            for column in ("jumpstarter", "raw")
        }
        verdicts = []
        for target in targets:
            if target.row != row.key:
                continue
            ratio = target.ratio(row, values["tether"], values)
            verdicts.append(
                {
                    "target": target.text,
                    "against": target.against,
                    "factor": target.factor,
                    "ratio": ratio,
                    "pass": None if ratio is None else ratio >= target.required,
                }
            )
        out.append(
            {
                "metric": row.key,
                "label": row.label,
                "unit": row.unit,
                "lower_is_better": row.lower_is_better,
                "compared_keys": {column: row.key_for(column) for column in COLUMNS},
                **values,
                "vs_jumpstarter": ratios["jumpstarter"],
                "vs_raw": ratios["raw"],
                "targets": verdicts,
            }
        )
    return out


# -- output -----------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _verdict_text(verdicts: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(plain text, overall: "pass" | "fail" | "n/a" | "")."""
    if not verdicts:
        return "", ""
    parts = []
    for verdict in verdicts:
        word = {True: "PASS", False: "FAIL", None: "n/a"}[verdict["pass"]]
        if verdict["against"] == "absolute":
            parts.append(f"{word} {verdict['factor']:g}")
            continue
        short = "js" if verdict["against"] == "jumpstarter" else verdict["against"]
        parts.append(f"{word} {verdict['factor']:g}x {short}")
    passes = [v["pass"] for v in verdicts]
    overall = "fail" if False in passes else "n/a" if None in passes else "pass"
    return ", ".join(parts), overall


def print_table(rows: Sequence[Mapping[str, Any]], *, title: str, plain: bool = False) -> None:
    """Print the comparison table (rich when available and not ``plain``)."""
    headers = ["metric", "unit", *COLUMNS, "vs js", "vs raw", "targets"]
    lines = []
    styles = []
    for row in rows:
        text, overall = _verdict_text(row["targets"])
        lines.append(
            [
                row["label"],
                row["unit"],
                *(_fmt(row[column]) for column in COLUMNS),
                _fmt_ratio(row["vs_jumpstarter"]),
                _fmt_ratio(row["vs_raw"]),
                text,
            ]
        )
        styles.append({"pass": "green", "fail": "red", "n/a": "yellow"}.get(overall, ""))
    if not plain:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            plain = True
    if plain:
        widths = [max(len(str(x)) for x in col) for col in zip(headers, *lines, strict=True)]
        print(title)
        for line in [headers, ["-" * w for w in widths], *lines]:
            print(
                "  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True))
            )
        return
    table = Table(title=title, title_justify="left")
    for header in headers:
        justify = "left" if header in ("metric", "unit", "targets") else "right"
        table.add_column(header, justify=justify)
    for line, style in zip(lines, styles, strict=True):
        cells = list(line)
        if style:
            cells[-1] = f"[{style}]{cells[-1]}[/{style}]"
        table.add_row(*cells)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")


def targets_as_data() -> list[dict[str, Any]]:
    return [asdict(target) for target in TARGETS]
