"""tether's storage write figures: one image through ``serve()`` and through a TLS exporter.

``python -m bench.storage_bench [--quick] [--storage-mb N]`` prints one JSON object:

    storage_mb_s: ``MockStorageMux`` write of an N MiB random image through ``tether.testing.serve``
        (the same measurement as ``bench.jumpstarter_bench.bench_storage``: a fresh mux on a
        temporary file, the client's ``write_local_file``, MB = 10**6 bytes);
    storage_tls_mb_s: the same write through a real exporter on ``tls://127.0.0.1`` (lab CA,
        ``tether.connect``), i.e. a remote flash over TLS on loopback;
    storage_cpu_s, storage_tls_cpu_s: CPU seconds of one write (client and exporter together,
        they share this process): what the figure costs whatever else the machine is doing;
    storage_mib: N;
    storage_dir: where the image and the mux's file live (``tempfile.gettempdir()``: set TMPDIR
        to the same place for Jumpstarter's part; a RAM-backed one such as /dev/shm measures the
        software rather than this machine's disk, whose write-back dominates otherwise).

Both writes include everything a user gets by default: the client's sha256 of what it sends
(appended to the stream) and the exporter's sha256 of what it received and wrote, compared
on the exporter. Each figure is the median of three writes (one with ``--quick``), each to a
fresh mux.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench._report import median
from bench._sockets import mb_per_s

__all__ = ["bench_storage", "bench_storage_tls", "make_image", "run"]


@contextlib.contextmanager
def make_image(size_mb: int) -> Iterator[str]:
    """A temporary file of ``size_mb`` MiB of random bytes (removed afterwards)."""
    block = os.urandom(1024 * 1024)
    with tempfile.TemporaryDirectory(prefix="bench-tether-storage-") as tmp:
        image = os.path.join(tmp, "image.bin")
        with open(image, "wb") as f:
            for _ in range(size_mb):
                f.write(block)
        yield image


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed_writes(write: Callable[[], Any], rounds: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process CPU seconds of each write."""
    seconds, cpu = [], []
    for _ in range(rounds):
        start, cpu_start = time.perf_counter(), _cpu()
        write()
        seconds.append(time.perf_counter() - start)
        cpu.append(_cpu() - cpu_start)
    return seconds, cpu


def bench_storage(image: str, size_mb: int, rounds: int = 3) -> dict[str, Any]:
    """MB/s of ``MockStorageMux`` writes of ``image`` through ``serve()`` (fresh mux each)."""
    from tether.drivers.storage import MockStorageMux
    from tether.testing import serve

    def once() -> None:
        with serve(MockStorageMux()) as client:
            result = client.write_local_file(image)
        if result.bytes != size_mb << 20:
            raise RuntimeError(f"wrote {result.bytes} bytes, expected {size_mb << 20}")

    seconds, cpu = _timed_writes(once, rounds)
    return {
        "storage_mb_s": mb_per_s(size_mb << 20, median(seconds)),
        "storage_cpu_s": median(cpu),
        "storage_mib": size_mb,
    }


def bench_storage_tls(image: str, size_mb: int, rounds: int = 3) -> dict[str, Any]:
    """MB/s of writes of ``image`` to a ``MockStorageMux`` of an exporter on tls://127.0.0.1."""
    import tether
    from tether.exporter import init_lab_certs, parse_config, run_exporter_in_thread

    with tempfile.TemporaryDirectory(prefix="bench-tether-tls-") as tmp:
        certs = init_lab_certs(Path(tmp) / "certs")
        config = parse_config(
            "name: bench-storage\n"
            f"tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}\n"
            "export:\n"
            "  storage: {type: tether.drivers.storage.MockStorageMux}\n",
            "bench-storage.yaml",
        )
        seconds: list[float] = []
        cpu: list[float] = []
        with run_exporter_in_thread(config, listen="tls://127.0.0.1:0") as running:
            for _ in range(rounds):
                # A fresh session gets a fresh driver tree: a new mux on a new temp file.
                with tether.connect(running.url, running.token, ca=certs.ca) as lab:
                    start, cpu_start = time.perf_counter(), _cpu()
                    result = lab.storage.write_local_file(image)
                    seconds.append(time.perf_counter() - start)
                    cpu.append(_cpu() - cpu_start)
                if result.bytes != size_mb << 20:
                    raise RuntimeError(f"wrote {result.bytes} bytes, expected {size_mb << 20}")
    return {
        "storage_tls_mb_s": mb_per_s(size_mb << 20, median(seconds)),
        "storage_tls_cpu_s": median(cpu),
        "storage_mib": size_mb,
    }


def run(quick: bool = False, size_mb: int | None = None) -> dict[str, Any]:
    """Both figures (a failing part becomes a note, as in ``bench.tether_bench``)."""
    if size_mb is None:
        size_mb = int(os.environ.get("BENCH_STORAGE_MB", "256"))
    out: dict[str, Any] = {"notes": []}
    if size_mb <= 0:
        out["notes"].append("storage: skipped (BENCH_STORAGE_MB <= 0)")
        return out
    rounds = 1 if quick else 3
    out["storage_dir"] = tempfile.gettempdir()
    with make_image(size_mb) as image:
        for name, part in (("storage", bench_storage), ("storage_tls", bench_storage_tls)):
            start = time.perf_counter()
            try:
                out.update(part(image, size_mb, rounds))
            except Exception as exc:
                out["notes"].append(f"{name}: {type(exc).__name__}: {exc}")
            out[f"seconds_{name}"] = time.perf_counter() - start
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.storage_bench")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--storage-mb", type=int, default=None)
    args = parser.parse_args(argv)
    sys.stdout.write(json.dumps(run(quick=args.quick, size_mb=args.storage_mb)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
