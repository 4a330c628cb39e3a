"""``python -m bench.controller``: one controller on SQLite, 5,000 exporters, 500 waiters.

What runs (loopback only, TLS, bounded to well under two minutes):

1. ``tether controller serve`` as a child process on a fresh SQLite file (heartbeat interval
   30 s, timeout 90 s); 5,000 exporters and 600 clients are made with the admin API.
2. Every exporter heartbeats once as fast as the server takes it (they come online), then
   keeps heartbeating at its 30 s interval (≈167 heartbeats/s) for the rest of the run, all
   from a process of their own (``_heartbeats``): sent from this one's event loop they
   saturated it, and the figures measured the bench's lag.
3. 100 exporters labelled ``group=busy`` are leased by holders; 500 clients ask for
   ``group=busy`` too and wait in the queue, each with a long-poll open.
4. Measured meanwhile:
   * ``grant``: a probe client asks for ``group=free`` (always available) and is granted on the
     spot; the time of that POST, over a few hundred probes (each released at once);
   * ``handoff``: a holder releases a busy exporter; the time until the head of the queue's
     long-poll answers ``ready``.
   * the achieved heartbeat rate, and how many heartbeats failed.

Prints a table and one JSON line. Target: grant p50 < 50 ms with the 500 waiting.
``--quick`` scales everything down by 10 for a smoke run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tether.controller import Admin, Database
from tether.controller.testing import run_controller

from ._heartbeats import Heartbeats, Lab

TARGET_GRANT_P50_MS = 50.0


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _run(quick: bool) -> dict[str, Any]:
    scale = 10 if quick else 1
    n_exporters, n_busy, n_waiters = 5000 // scale, 100 // scale, 500 // scale
    probes, handoffs = 300 // scale, 20 // max(1, scale // 2)
    # SIGTERM (e.g. a time limit) cancels the run, so the controller child is stopped too.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    with tempfile.TemporaryDirectory(prefix="tether-bench-controller-") as tmp_name:
        tmp = Path(tmp_name)
        with run_controller(
            tmp, subprocess=True, heartbeat_interval=30, heartbeat_timeout=90
        ) as ctl:
            assert ctl.ca is not None
            return await _measure(
                tmp, ctl.url, ctl.ca, n_exporters, n_busy, n_waiters, probes, handoffs
            )


async def _measure(
    tmp: Path,
    url: str,
    ca: Path,
    n_exporters: int,
    n_busy: int,
    n_waiters: int,
    probes: int,
    handoffs: int,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    database = Database(f"sqlite:///{tmp / 'controller.db'}")
    admin = Admin(database)
    exporter_tokens = [
        admin.create_exporter(
            f"e{i:05d}", {"group": "busy" if i < n_busy else "free", "pool": f"p{i % 50}"}
        ).token
        for i in range(n_exporters)
    ]
    holder_tokens = [admin.create_client(f"holder{i}").token for i in range(n_busy)]
    waiter_tokens = [admin.create_client(f"waiter{i}").token for i in range(n_waiters)]
    probe_token = admin.create_client("probe").token
    admin_token = admin.create_admin("bench-admin").token
    database.dispose()
    setup_s = time.perf_counter() - t0
    _log(f"made {n_exporters} exporters and {n_busy + n_waiters + 1} clients in {setup_s:.1f} s")

    lab = Lab(url, ssl.create_default_context(cafile=str(ca)))
    t0 = time.perf_counter()
    beats = Heartbeats(url, str(ca), exporter_tokens, 30.0)
    await beats.wait_online()
    online_s = time.perf_counter() - t0
    _log(f"all exporters online after {online_s:.1f} s")

    # Heartbeats reach the database in the controller's next flush (about a second): wait
    # until every busy exporter is available before leasing them.
    async with lab.client(probe_token, 1) as looker:
        for _ in range(120):  # a minute at most; then the check below says what is missing
            listed = await looker.get("/v1/exporters", params={"selector": "group=busy"})
            statuses = [e["status"] for e in listed.json()["exporters"]]
            if statuses.count("available") == n_busy:
                break
            await asyncio.sleep(0.5)
    holders = [lab.client(t, 1) for t in holder_tokens]
    held = []
    for holder in holders:
        answer = await holder.post("/v1/leases", json={"selector": "group=busy", "duration": "1h"})
        held.append(answer.json())
    assert all(item["state"] == "ready" for item in held), [
        i for i in held if i["state"] != "ready"
    ]

    waiters = [lab.client(t, 1) for t in waiter_tokens]
    queued = []
    for waiter in waiters:
        answer = await waiter.post("/v1/leases", json={"selector": "group=busy", "duration": "1h"})
        queued.append(answer.json())
    assert all(item["state"] == "pending" for item in queued)
    assert queued[-1]["position"] == n_waiters
    _log(f"{n_busy} busy exporters held, {n_waiters} clients queued")

    async def wait_ready(index: int) -> float:
        client, lease = waiters[index], queued[index]
        while True:
            answer = await client.get(
                f"/v1/leases/{lease['id']}", params={"wait": 60, "state": "pending"}
            )
            if answer.json()["state"] != "pending":
                return time.perf_counter()

    polls = [asyncio.ensure_future(wait_ready(i)) for i in range(n_waiters)]

    heartbeat_start, beats_before = time.perf_counter(), beats.ok
    grant_ms: list[float] = []
    release_ms: list[float] = []
    async with lab.client(probe_token, 1) as probe:
        for _ in range(probes):
            start = time.perf_counter()
            answer = await probe.post(
                "/v1/leases", json={"selector": "group=free", "duration": "10m"}
            )
            grant_ms.append((time.perf_counter() - start) * 1000)
            assert answer.json()["state"] == "ready", answer.text
            start = time.perf_counter()
            await probe.delete(f"/v1/leases/{answer.json()['id']}")
            release_ms.append((time.perf_counter() - start) * 1000)

    _log(f"{probes} probe grants done")
    dashboard = await _dashboard(lab, ca, admin_token, probe_token, probes)
    _log("dashboard measured")
    handoff_ms: list[float] = []
    for k in range(handoffs):
        start = time.perf_counter()
        await holders[k].delete(f"/v1/leases/{held[k]['id']}")
        done = await polls[k]
        handoff_ms.append((done - start) * 1000)
    heartbeat_rate = (beats.ok - beats_before) / (time.perf_counter() - heartbeat_start)

    for poll in polls:
        poll.cancel()
    await asyncio.gather(*polls, return_exceptions=True)
    await beats.stop()
    for client in holders + waiters:
        await client.aclose()
    return {
        "exporters": n_exporters,
        "waiting_clients": n_waiters,
        "setup_s": round(setup_s, 1),
        "all_online_s": round(online_s, 1),
        "heartbeats_per_s": round(heartbeat_rate, 1),
        "heartbeats_failed": beats.failed,
        "grant_p50_ms": round(statistics.median(grant_ms), 2),
        "grant_p95_ms": round(_percentile(grant_ms, 0.95), 2),
        "release_p50_ms": round(statistics.median(release_ms), 2),
        "handoff_p50_ms": round(statistics.median(handoff_ms), 2),
        "handoff_p95_ms": round(_percentile(handoff_ms, 0.95), 2),
        "grant_target_ms": TARGET_GRANT_P50_MS,
        "grant_target_met": statistics.median(grant_ms) < TARGET_GRANT_P50_MS,
        **dashboard,
    }


async def _dashboard(
    lab: Lab, ca: Path, admin_token: str, probe_token: str, probes: int
) -> dict[str, Any]:
    """The dashboard in headless Chromium on the full lab: first screen, a grant reaching an
    open page, ``/metrics`` scrapes, and grants while a page is open and metrics are scraped."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--no-sandbox"]
        )
        context = await browser.new_context(ignore_https_errors=True)
        await context.add_cookies(
            [{"name": "tether_session", "value": admin_token, "url": lab.url, "secure": True}]
        )
        page = await context.new_page()
        start = time.perf_counter()
        await page.goto(lab.url + "/", wait_until="load")
        first_screen_ms = (time.perf_counter() - start) * 1000
        paint = await page.evaluate(
            "performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? -1"
        )
        await page.wait_for_selector("#live:text('live')")
        update_ms: list[float] = []
        grant_ms: list[float] = []
        scrape_ms: list[float] = []
        async with lab.client(probe_token, 1) as probe, lab.client(None, 1) as scraper:
            for k in range(max(5, probes // 10)):
                start = time.perf_counter()
                answer = await probe.post(
                    "/v1/leases", json={"selector": "group=free", "duration": "10m"}
                )
                granted = time.perf_counter()
                lease_id = answer.json()["id"]
                await page.wait_for_selector(f"[data-lease='{lease_id}']", timeout=30_000)
                update_ms.append((time.perf_counter() - granted) * 1000)
                grant_ms.append((granted - start) * 1000)
                await probe.delete(f"/v1/leases/{lease_id}")
                if k % 2 == 0:
                    start = time.perf_counter()
                    scraped = await scraper.get("/metrics")
                    scrape_ms.append((time.perf_counter() - start) * 1000)
                    assert scraped.status_code == 200
        await browser.close()
    return {
        "dashboard_first_screen_ms": round(first_screen_ms, 1),
        "dashboard_first_paint_ms": round(paint, 1),
        "dashboard_update_p50_ms": round(statistics.median(update_ms), 1),
        "dashboard_update_max_ms": round(max(update_ms), 1),
        "metrics_scrape_p50_ms": round(statistics.median(scrape_ms), 2),
        "grant_with_dashboard_p50_ms": round(statistics.median(grant_ms), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.controller", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a tenth of everything")
    args = parser.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    try:
        result = asyncio.run(_run(args.quick))
    except asyncio.CancelledError:
        print("bench.controller: stopped (SIGTERM), controller too", file=sys.stderr)
        sys.exit(143)
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(result))
    sys.exit(0 if result["grant_target_met"] else 1)


if __name__ == "__main__":
    main()
