"""``python -m bench.hostile``, the exporter part: a legitimate client's calls while the
exporter is flooded.

One ``tether exporter serve`` child process (TLS on loopback, a token, the default
``limits:``), the one of ``tests/hostile/_wire_kit.py``, whose floods these are too. A
legitimate client (the ``tether.connect`` stack, its own connection) times ``power.status()``,
first with nothing else going on, then under each flood of issue 12, every flood run from its
own process so that the flooder never shares a GIL with the timed client:

* ``slow_tls``: 300 anonymous TLS connections from ten loopback addresses (the per-address cap
  is 64), each trickling a HELLO a byte a second; those the handshake deadline drops are opened
  again;
* ``ping_flood``: a peer sending PINGs and never reading the PONGs (a new one whenever the
  server drops it, past ``MAX_PINGS_PER_SECOND``: so this is a reconnecting flood too);
* ``unread_results``: a peer asking for 300 results of 1 MiB at once and never reading them
  (a new one whenever the server drops it, at its backlog bound);
* ``huge_argument``: a client calling ``power.cycle`` with a 300 kB argument without pause
  (each call is answered with a small ``InvalidArgument``).

Side by side: the call's p50 unloaded and under the flood, their ratio (target at most 3x), and
the exporter's resident memory over its idle value (target at most 200 MB).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tether.errors import InvalidArgument
from tether.security import init_lab_certs

from ._phase import Samples, under_flood

# The floods live with the hostile-load tests: see tests/hostile/_wire_kit.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))

from hostile._wire_kit import (
    SAFETY,
    Exporter,
    RawPeer,
    legit_client,
    ping_flood,
    slow_tls_flood,
    unread_calls,
    wait_dropped,
)

__all__ = ["FLOODS", "print_table", "run"]

SLOW_CONNECTIONS = 300
#: The timed client is 127.0.0.1; each flood comes from other addresses (caps are per address).
SLOW_SOURCES = [f"127.0.0.{n}" for n in range(10, 20)]


def _peer(exporter: Exporter, source: str, stop: Any) -> RawPeer | None:
    """A raw peer past the handshake, retried while the server refuses (a cap, a drop)."""
    while not stop.is_set():
        try:
            return RawPeer(exporter, source=source)
        except (OSError, AssertionError):
            stop.wait(0.1)
    return None


def _flood_slow_tls(exporter: Exporter, stop: Any) -> None:
    slow_tls_flood(exporter, SLOW_CONNECTIONS, SLOW_SOURCES, stop)


def _flood_pings(exporter: Exporter, stop: Any) -> None:
    while (peer := _peer(exporter, "127.0.0.3", stop)) is not None:
        ping_flood(peer, 10**9, SAFETY)  # until the server drops it (or a while passed)
        peer.close()


def _flood_unread_results(exporter: Exporter, stop: Any) -> None:
    while (peer := _peer(exporter, "127.0.0.4", stop)) is not None:
        unread_calls(peer, 300, 1 << 20)
        wait_dropped(peer, stop, SAFETY)
        peer.close()


def _flood_huge_argument(exporter: Exporter, stop: Any) -> None:
    connection, tree = legit_client(exporter, source="127.0.0.5")
    argument = b"\0" * 300_000
    try:
        while not stop.is_set():
            with contextlib.suppress(InvalidArgument):  # answered: small and at once
                tree.children["power"].call("cycle", argument)
    finally:
        connection.close()


FLOODS: dict[str, Callable[[Exporter, Any], None]] = {
    "slow_tls": _flood_slow_tls,
    "ping_flood": _flood_pings,
    "unread_results": _flood_unread_results,
    "huge_argument": _flood_huge_argument,
}


def _measure(exporter: Exporter, seconds: float) -> dict[str, float]:
    """The legitimate client's calls for ``seconds`` (a new connection: it must be admitted)."""
    calls: list[float] = []
    samples = Samples({"call": calls}, [exporter.rss_mb()])
    connection, tree = legit_client(exporter)
    power = tree.children["power"]
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            start = time.perf_counter()
            try:
                power.call("status")
            except Exception:
                samples.failures += 1
            calls.append(time.perf_counter() - start)
            if len(calls) % 20 == 0:
                samples.rss.append(exporter.rss_mb())
            time.sleep(0.005)  # a client that calls, not a flood of its own
    finally:
        connection.close()
    samples.rss.append(exporter.rss_mb())
    return samples.figures()


def run(quick: bool = False) -> dict[str, Any]:
    """Every phase; the figures as one dict."""
    seconds = 4.0 if quick else 10.0
    with tempfile.TemporaryDirectory(prefix="tether-bench-hostile-exporter-") as tmp_name:
        tmp = Path(tmp_name)
        exporter = Exporter(tmp, init_lab_certs(tmp / "certs"))
        try:
            return _phases(exporter, seconds)
        finally:
            exporter.close()


def _phases(exporter: Exporter, seconds: float) -> dict[str, Any]:
    _measure(exporter, 1.0)  # warm up
    idle = _measure(exporter, seconds)
    result: dict[str, Any] = {"idle": idle}
    for name, flood in FLOODS.items():
        result[name] = under_flood(
            flood,
            (exporter,),
            lambda: _measure(exporter, seconds),
            idle,
            ("call",),
            min(2.0, seconds / 2),
        )
    floods = [result[name] for name in FLOODS]
    result["hostile_exporter_call_ratio_max"] = max(row["call_ratio"] for row in floods)
    result["hostile_exporter_rss_over_idle_mb_max"] = max(row["rss_over_idle_mb"] for row in floods)
    return result


def print_table(result: dict[str, Any]) -> None:
    """The exporter part's table."""
    idle = result["idle"]
    print(
        f"{'exporter flood':<15} {'call p50 ms':>12} {'x idle':>7} {'RSS +MB':>8} {'fail':>5}  "
        "target: <=3x, <=200 MB"
    )
    calls, failures = idle["call_p50_ms"], idle["failures"]
    print(f"{'(none)':<15} {calls:>12.2f} {'1.00':>7} {0:>8.0f} {failures:>5}")
    for name in FLOODS:
        row = result[name]
        print(
            f"{name:<15} {row['call_p50_ms']:>12.2f} {row['call_ratio']:>7.2f} "
            f"{row['rss_over_idle_mb']:>8.0f} {row['failures']:>5}  "
            f"{'ok' if row['ok'] else 'MISSED'}"
        )
