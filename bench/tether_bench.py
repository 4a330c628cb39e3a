"""tether figures, with the same keys as ``bench.jumpstarter_bench``.

``run(quick=False) -> dict`` measures what exists and reports the rest as missing: a part that
cannot be imported or fails adds a line to ``notes`` and leaves its metrics out (the table shows
"n/a"). ``python -m bench.tether_bench [--quick]`` prints the results as one JSON object.

Metrics:
    call_p50_us, call_p99_us, calls_per_s: ``MockPower.on()`` through ``tether.testing.serve``;
    stream_call_p50_us: one whole ``read()`` of two readings (as Jumpstarter's MockPower);
    stream_items_per_s: a ``read()`` of STREAM_ITEMS readings;
    bytes_mb_s: 64 KiB blocks through ``TcpNetwork`` to a discarding sink on 127.0.0.1 (the
        sink runs in a process of its own, ``bench._sockets.Sink``);
    serve_call_ms: ``serve(MockPower())`` + one ``on()`` + teardown, median;
    dut_start_call_stop_ms: test kit ``DriverUnderTest`` start + one call + stop, median;
    storage_mb_s: storage mux write of a BENCH_STORAGE_MB MiB image file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench._report import median, time_calls
from bench._sockets import LOOPBACK, Sink, mb_per_s, stream_mb_s

__all__ = ["run"]

CHUNK = 64 * 1024
STREAM_ITEMS = 1000


def bench_calls(quick: bool) -> dict[str, Any]:
    from tether.drivers.power import MockPower
    from tether.testing import serve

    with serve(MockPower()) as client:
        stats = time_calls(
            client.on, count=2000 if quick else 20000, seconds=1.0 if quick else 3.0, warmup=100
        )
    with serve(MockPower(samples=2)) as client:
        read = time_calls(
            lambda: list(client.read()),
            count=500 if quick else 5000,
            seconds=1.0 if quick else 2.0,
            warmup=20,
        )
    return {
        "call_p50_us": stats["p50_us"],
        "call_p99_us": stats["p99_us"],
        "calls_per_s": stats["per_s"],
        "call_n": stats["n"],
        "stream_call_p50_us": read["p50_us"],
        "stream_call_items": 2,
    }


def bench_streaming_items(quick: bool) -> dict[str, Any]:
    from tether.drivers.power import MockPower
    from tether.testing import serve

    deadline = time.perf_counter() + (1.0 if quick else 3.0)
    rounds = 10 if quick else 200
    with serve(MockPower(samples=STREAM_ITEMS)) as client:
        sum(1 for _ in client.read())  # warm-up
        items = 0
        start = time.perf_counter()
        for _ in range(rounds):
            items += sum(1 for _ in client.read())
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - start
    return {"stream_items_per_s": items / elapsed, "stream_items_per_call": STREAM_ITEMS}


def bench_bytes(quick: bool) -> dict[str, Any]:
    from tether.drivers.network import TcpNetwork
    from tether.testing import serve

    with Sink() as sink, serve(TcpNetwork(host=LOOPBACK, port=sink.port)) as client:
        speed, sent = stream_mb_s(
            client,
            sink,
            chunk=CHUNK,
            max_bytes=(256 if quick else 4096) * 1024 * 1024,
            seconds=1.0 if quick else 3.0,
        )
    return {"bytes_mb_s": speed, "bytes_sent": sent}


def bench_serve_call(quick: bool) -> dict[str, Any]:
    from tether.drivers.power import MockPower
    from tether.testing import serve

    count = 20 if quick else 200
    deadline = time.perf_counter() + (1.0 if quick else 3.0)
    with serve(MockPower()) as client:  # warm-up
        client.on()
    samples: list[float] = []
    for _ in range(count):
        start = time.perf_counter()
        with serve(MockPower()) as client:
            client.on()
        samples.append((time.perf_counter() - start) * 1e3)
        if time.perf_counter() >= deadline:
            break
    return {"serve_call_ms": median(samples), "serve_call_n": len(samples)}


def bench_driver_under_test(quick: bool) -> dict[str, Any]:
    """Start a MockPower under the test kit, call ``on()`` directly, stop it (API.md)."""
    from tether.drivers.power import MockPower
    from tether.testing import DriverRuntime, DriverUnderTest, TestNode  # type: ignore[attr-defined]

    def once() -> None:
        with DriverRuntime() as runtime:
            node = TestNode("root")
            start_args, _incoming, _outgoing = node.create_start_args_and_serve()
            dut = DriverUnderTest(MockPower)
            runtime.run_to_completion(dut.start(start_args))
            runtime.run_to_completion(dut.driver.on())
            runtime.run_to_completion(dut.prepare_stop())
            dut.stop()

    once()  # warm-up
    count = 50 if quick else 1000
    deadline = time.perf_counter() + (1.0 if quick else 3.0)
    samples: list[float] = []
    for _ in range(count):
        start = time.perf_counter()
        once()
        samples.append((time.perf_counter() - start) * 1e3)
        if time.perf_counter() >= deadline:
            break
    return {"dut_start_call_stop_ms": median(samples), "dut_start_call_stop_n": len(samples)}


def bench_storage(quick: bool, size_mb: int) -> dict[str, Any]:
    """Storage mux write of an image file; the driver's API is a guess until it exists."""
    from tether.drivers.storage import MockStorageMux  # type: ignore[import-not-found]
    from tether.testing import serve

    if size_mb <= 0:
        return {"notes": ["storage: skipped (BENCH_STORAGE_MB <= 0)"]}
    block = os.urandom(1024 * 1024)
    with tempfile.TemporaryDirectory(prefix="bench-tether-") as tmp:
        image = os.path.join(tmp, "image.bin")
        with open(image, "wb") as f:
            for _ in range(size_mb):
                f.write(block)
        with serve(MockStorageMux()) as client:
            start = time.perf_counter()
            client.write_local_file(image)
            elapsed = time.perf_counter() - start
    size = size_mb * 1024 * 1024
    return {"storage_mb_s": mb_per_s(size, elapsed), "storage_mib": size_mb}


def run(quick: bool = False, storage_mb: int | None = None) -> dict[str, Any]:
    """Measure every part that exists; missing or failing parts become notes."""
    if storage_mb is None:
        storage_mb = int(os.environ.get("BENCH_STORAGE_MB", "256"))
    out: dict[str, Any] = {
        "notes": [
            "measured in-process through tether.testing.serve() (client thread and exporter "
            "loop thread in one process, unix socketpair), as a test suite runs it; the "
            "byte-stream sink is a separate process for every peer"
        ]
    }
    with contextlib.suppress(Exception):
        import tether

        out["versions"] = {"tether": getattr(tether, "__version__", "?")}
    parts: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("calls", lambda: bench_calls(quick)),
        ("streaming", lambda: bench_streaming_items(quick)),
        ("bytes", lambda: bench_bytes(quick)),
        ("serve_call", lambda: bench_serve_call(quick)),
        ("driver_under_test", lambda: bench_driver_under_test(quick)),
        ("storage", lambda: bench_storage(quick, storage_mb)),
    ]
    for name, part in parts:
        start = time.perf_counter()
        try:
            result = part()
        except ImportError as exc:
            out["notes"].append(f"{name}: not available yet ({exc})")
            continue
        except Exception as exc:
            traceback.print_exc()
            out["notes"].append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        out["notes"].extend(result.pop("notes", []))
        out.update(result)
        out[f"seconds_{name}"] = time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tether_bench")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--storage-mb", type=int, default=None)
    args = parser.parse_args(argv)
    result = run(quick=args.quick, storage_mb=args.storage_mb)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
