"""Jumpstarter 0.9 figures, measured inside ``bench/.venv-jumpstarter``.

Run by ``python -m bench`` as ``<venv>/bin/python -m bench.jumpstarter_bench [--quick]`` from the
repository root; prints one JSON object on stdout (anything Jumpstarter prints goes to stderr).
Imports only the standard library, Jumpstarter and its drivers, and ``bench._report`` /
``bench._sockets`` (standard library only).

Metrics (same keys as ``bench.tether_bench``):
    call_p50_us, call_p99_us, calls_per_s: ``MockPower.on()`` through ``serve()``;
    stream_call_p50_us: one whole ``MockPower.read()`` (two readings in 0.9);
    stream_items_per_s: a ``read()`` generator that yields many readings;
    bytes_mb_s: 64 KiB blocks through ``TcpNetwork`` to a discarding sink on 127.0.0.1;
    serve_call_ms: ``serve(MockPower())`` + one ``on()`` + teardown, median;
    storage_mb_s: ``MockStorageMux.write_local_file`` of a BENCH_STORAGE_MB MiB file.
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
from collections.abc import AsyncGenerator, Callable, Iterator
from importlib import metadata
from typing import Any

from bench._report import median, time_calls
from bench._sockets import LOOPBACK, Sink, mb_per_s, timed_send

CHUNK = 64 * 1024
STREAM_ITEMS = 1000


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[int]:
    """Point fd 1 at stderr for the duration; yields a dup of the real stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield saved
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)


def _versions() -> dict[str, str]:
    names = [
        "jumpstarter",
        "jumpstarter-protocol",
        "jumpstarter-driver-power",
        "jumpstarter-driver-network",
        "jumpstarter-driver-opendal",
        "grpcio",
        "anyio",
        "opendal",
    ]
    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def bench_calls(quick: bool) -> dict[str, Any]:
    from jumpstarter.common.utils import serve
    from jumpstarter_driver_power.driver import MockPower

    with serve(MockPower()) as client:
        stats = time_calls(
            client.on, count=300 if quick else 3000, seconds=1.5 if quick else 4.0, warmup=50
        )
        read = time_calls(
            lambda: list(client.read()),
            count=100 if quick else 1000,
            seconds=1.0 if quick else 3.0,
            warmup=10,
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
    from jumpstarter.common.utils import serve
    from jumpstarter.driver import export
    from jumpstarter_driver_power.common import PowerReading
    from jumpstarter_driver_power.driver import MockPower

    class ManyReadings(MockPower):
        """MockPower whose ``read()`` yields STREAM_ITEMS readings (0.9's yields two)."""

        @export
        async def read(self) -> AsyncGenerator[PowerReading, None]:
            for _ in range(STREAM_ITEMS):
                yield PowerReading(voltage=5.0, current=2.0)

    deadline = time.perf_counter() + (1.5 if quick else 4.0)
    rounds = 3 if quick else 20
    items = 0
    with serve(ManyReadings()) as client:
        items += sum(1 for _ in client.read())  # warm-up
        items = 0
        start = time.perf_counter()
        for _ in range(rounds):
            items += sum(1 for _ in client.read())
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - start
    return {"stream_items_per_s": items / elapsed, "stream_items_per_call": STREAM_ITEMS}


def bench_bytes(quick: bool) -> dict[str, Any]:
    from jumpstarter.common.utils import serve
    from jumpstarter_driver_network.driver import TcpNetwork

    with Sink() as sink, serve(TcpNetwork(host=LOOPBACK, port=sink.port)) as client:
        # 0.9's blocking stream has send() and receive() only (no send_eof): leaving the
        # context closes the stream, which closes the exporter's TCP connection.
        with client.stream("connect") as stream:
            timed_send(sink, stream.send, chunk=CHUNK, max_bytes=8 * CHUNK, seconds=1.0)
        with client.stream("connect") as stream:
            sent, elapsed = timed_send(
                sink,
                stream.send,
                chunk=CHUNK,
                max_bytes=(64 if quick else 1024) * 1024 * 1024,
                seconds=1.5 if quick else 4.0,
            )
    return {"bytes_mb_s": mb_per_s(sent, elapsed), "bytes_sent": sent}


def bench_serve_call(quick: bool) -> dict[str, Any]:
    from jumpstarter.common.utils import serve
    from jumpstarter_driver_power.driver import MockPower

    count = 10 if quick else 50
    deadline = time.perf_counter() + (2.0 if quick else 6.0)
    with serve(MockPower()) as client:  # warm-up: imports, grpc channel set-up
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


def bench_storage(quick: bool, size_mb: int) -> dict[str, Any]:
    from jumpstarter.common.utils import serve
    from jumpstarter_driver_opendal.driver import MockStorageMux

    if size_mb <= 0:
        return {"notes": ["storage: skipped (BENCH_STORAGE_MB <= 0)"]}
    block = os.urandom(1024 * 1024)
    with tempfile.TemporaryDirectory(prefix="bench-js-") as tmp:
        image = os.path.join(tmp, "image.bin")
        with open(image, "wb") as f:
            for _ in range(size_mb):
                f.write(block)
        mux = MockStorageMux()
        try:
            with serve(mux) as client:
                start = time.perf_counter()
                client.write_local_file(image)
                elapsed = time.perf_counter() - start
            written = os.path.getsize(mux.file.name)
        finally:
            with contextlib.suppress(Exception):
                mux.file.close()
    size = size_mb * 1024 * 1024
    result: dict[str, Any] = {"storage_mb_s": mb_per_s(size, elapsed), "storage_mib": size_mb}
    if written != size:
        result["notes"] = [f"storage: mux file has {written} bytes, expected {size}"]
    return result


def run(quick: bool, size_mb: int) -> dict[str, Any]:
    out: dict[str, Any] = {"versions": _versions(), "notes": []}
    parts: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("calls", lambda: bench_calls(quick)),
        ("streaming", lambda: bench_streaming_items(quick)),
        ("bytes", lambda: bench_bytes(quick)),
        ("serve_call", lambda: bench_serve_call(quick)),
        ("storage", lambda: bench_storage(quick, size_mb)),
    ]
    for name, part in parts:
        start = time.perf_counter()
        try:
            result = part()
        except Exception as exc:
            traceback.print_exc()
            out["notes"].append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        out["notes"].extend(result.pop("notes", []))
        out.update(result)
        out[f"seconds_{name}"] = time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.jumpstarter_bench")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--storage-mb", type=int, default=int(os.environ.get("BENCH_STORAGE_MB", "256"))
    )
    args = parser.parse_args(argv)
    with _stdout_to_stderr() as real_stdout:
        result = run(args.quick, args.storage_mb)
    os.write(real_stdout, (json.dumps(result) + "\n").encode())
    os.close(real_stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
