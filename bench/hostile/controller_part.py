"""``python -m bench.hostile``, the controller part: a legitimate client's calls while the
controller is flooded.

One ``tether controller serve`` child process (TLS, SQLite, loopback). A legitimate client
(keep-alive, its own token) times ``GET /v1/leases/{id}`` on its own lease and an exporter
times its heartbeat, first with nothing else going on, then under each flood, every flood run
from its own process so that the flooder's work never shares a GIL with the timed client:

* ``big_bodies``: 1 GB declared bodies to ``POST /v1/leases`` (anonymous, bad and good
  tokens), each connection streaming junk until refused;
* ``slow_headers``: 1,000 connections that send half a request and stop;
* ``bad_tokens``: failed authentications as fast as they go (4 connections);
* ``queue``: one client with its maximum of waiting requests (100) while three connections
  list its leases without pause.

Printed side by side: each call's p50 unloaded and under the flood, their ratio (target at
most 3x), and the server's resident memory over its idle value (target at most 200 MB).
"""

from __future__ import annotations

import resource
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tether.controller.testing import run_controller

from ._phase import Samples, under_flood

_SLOW_CONNECTIONS = 1000


# -- the controller ---------------------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# -- floods (each in its own process) -------------------------------------------------------


def _context(ca: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca)


def _connect(url: str, context: ssl.SSLContext) -> ssl.SSLSocket:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    return context.wrap_socket(sock, server_hostname=host)


def _flood_big_bodies(url: str, ca: str, token: str, stop: Any) -> None:
    context = _context(ca)
    junk = b"{" * 65536
    tokens = [None, "tth_wrong", token]
    i = 0
    while not stop.is_set():
        auth = tokens[i % 3]
        i += 1
        header = f"Authorization: Bearer {auth}\r\n" if auth else ""
        try:
            with _connect(url, context) as sock:
                sock.sendall(
                    (
                        "POST /v1/leases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                        f"{header}Content-Length: 1000000000\r\n\r\n"
                    ).encode()
                )
                sock.settimeout(5)
                for _ in range(200):  # up to 13 MB each, until the server answers or cuts
                    sock.sendall(junk)
        except OSError:
            pass


def _flood_slow_headers(url: str, ca: str, _token: str, stop: Any) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    context = _context(ca)
    held: list[ssl.SSLSocket] = []
    while not stop.is_set():
        held = [s for s in held if s.fileno() != -1]
        while len(held) < _SLOW_CONNECTIONS and not stop.is_set():
            try:
                sock = _connect(url, context)
                sock.sendall(b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\n")
                sock.setblocking(False)
                held.append(sock)
            except OSError:
                break
        # Notice the ones the server dropped (header deadline) and open new ones.
        for sock in list(held):
            try:
                if sock.recv(1) == b"":
                    sock.close()
            except (BlockingIOError, ssl.SSLWantReadError):
                pass
            except OSError:
                sock.close()
        stop.wait(0.5)
    for sock in held:
        sock.close()


def _flood_bad_tokens(url: str, ca: str, _token: str, stop: Any) -> None:
    def hammer() -> None:
        with httpx.Client(base_url=url, verify=_context(ca), timeout=30) as http:
            n = 0
            while not stop.is_set():
                n += 1
                http.get("/v1/whoami", headers={"Authorization": f"Bearer tth_bad{n}"})

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _flood_queue(url: str, ca: str, hog: str, stop: Any) -> None:
    headers = {"Authorization": f"Bearer {hog}"}
    with httpx.Client(base_url=url, verify=_context(ca), timeout=60, headers=headers) as http:
        while True:
            answer = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 600})
            if answer.status_code != 201:
                break

    def hammer() -> None:
        with httpx.Client(base_url=url, verify=_context(ca), timeout=60, headers=headers) as h:
            while not stop.is_set():
                h.get("/v1/leases")

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


FLOODS: dict[str, Callable[..., None]] = {
    "big_bodies": _flood_big_bodies,
    "slow_headers": _flood_slow_headers,
    "bad_tokens": _flood_bad_tokens,
    "queue": _flood_queue,
}


# -- measuring --------------------------------------------------------------------------------


def _measure(
    client: httpx.Client, exporter: httpx.Client, lease_id: str, pid: int, seconds: float
) -> dict[str, float]:
    calls: list[float] = []
    beats: list[float] = []
    samples = Samples({"call": calls, "heartbeat": beats}, [_rss_mb(pid)])
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        try:
            ok = client.get(f"/v1/leases/{lease_id}").status_code == 200
        except httpx.HTTPError:
            ok = False
        calls.append(time.perf_counter() - start)
        start = time.perf_counter()
        try:
            ok = exporter.post("/v1/exporter/heartbeat", json={}).status_code == 200 and ok
        except httpx.HTTPError:
            ok = False
        beats.append(time.perf_counter() - start)
        samples.failures += not ok
        samples.rss.append(_rss_mb(pid))
        time.sleep(0.01)
    return samples.figures()


def run(quick: bool = False) -> dict[str, Any]:
    """Every phase; the figures as one dict."""
    seconds = 4.0 if quick else 10.0
    with (
        tempfile.TemporaryDirectory(prefix="tether-bench-hostile-") as tmp,
        run_controller(tmp, subprocess=True) as ctl,
    ):
        process = getattr(ctl, "process")  # noqa: B009 (a subprocess handle has one)
        return _phases(process, ctl.url, str(ctl.ca), seconds)


def _phases(process: subprocess.Popen[str], url: str, ca: str, seconds: float) -> dict[str, Any]:
    from tether.controller import Admin, Database

    database = Database(f"sqlite:///{Path(ca).parent.parent / 'controller.db'}")
    admin = Admin(database)
    alice = admin.create_client("alice").token
    hog = admin.create_client("hog").token
    bench = admin.create_exporter("bench-1", {"board": "rpi4"}).token
    database.dispose()
    context = _context(ca)
    with (
        httpx.Client(
            base_url=url, verify=context, headers={"Authorization": f"Bearer {alice}"}, timeout=60
        ) as client,
        httpx.Client(
            base_url=url, verify=context, headers={"Authorization": f"Bearer {bench}"}, timeout=60
        ) as exporter,
    ):
        exporter.post("/v1/exporter/register", json={}).raise_for_status()
        lease = client.post("/v1/leases", json={"selector": "board=rpi4", "duration": "2h"})
        lease_id = lease.json()["id"]
        _measure(client, exporter, lease_id, process.pid, 1.0)  # warm up
        idle = _measure(client, exporter, lease_id, process.pid, seconds)
        result: dict[str, Any] = {"idle": idle}
        for name, flood in FLOODS.items():
            token = hog if name == "queue" else alice
            result[name] = under_flood(
                flood,
                (url, ca, token),
                lambda: _measure(client, exporter, lease_id, process.pid, seconds),
                idle,
                ("call", "heartbeat"),
                min(2.0, seconds / 2),
            )
    floods = [result[name] for name in FLOODS]
    result["hostile_call_ratio_max"] = max(
        max(row["call_ratio"], row["heartbeat_ratio"]) for row in floods
    )
    result["hostile_rss_over_idle_mb_max"] = max(row["rss_over_idle_mb"] for row in floods)
    return result


def print_table(result: dict[str, Any]) -> None:
    """The controller part's table."""
    idle = result["idle"]
    print(
        f"{'flood':<14} {'call p50 ms':>12} {'x idle':>7} {'beat p50 ms':>12} {'x idle':>7} "
        f"{'RSS +MB':>8} {'fail':>5}  target: <=3x, <=200 MB"
    )
    print(
        f"{'(none)':<14} {idle['call_p50_ms']:>12.2f} {'1.00':>7} "
        f"{idle['heartbeat_p50_ms']:>12.2f} {'1.00':>7} {0:>8.0f} {idle['failures']:>5}"
    )
    for name in FLOODS:
        row = result[name]
        print(
            f"{name:<14} {row['call_p50_ms']:>12.2f} {row['call_ratio']:>7.2f} "
            f"{row['heartbeat_p50_ms']:>12.2f} {row['heartbeat_ratio']:>7.2f} "
            f"{row['rss_over_idle_mb']:>8.0f} {row['failures']:>5}  "
            f"{'ok' if row['ok'] else 'MISSED'}"
        )
