"""tether through a real exporter process, over TLS on loopback.

``run(quick=False) -> dict`` starts ``tether exporter serve`` (a lab CA and certificates made
for the run, a bearer token), waits for its "ready" line, connects with ``tether.connect`` and
measures:

    tls_call_p50_us, tls_call_p99_us, tls_calls_per_s: ``MockPower.on()``;
    tls_stream_mb_s: STREAM_MB MiB in CHUNK blocks into a byte stream whose driver discards
        them (timed until the driver acknowledged the end of the stream);
    tls_stream_server_cpu_s_per_gb, tls_stream_client_cpu_s_per_gb: CPU seconds each side
        spent per GB of that stream (robust against other load on the machine; a side at
        1.6 s/GB caps the stream at about 624 MB/s on one core);
    exporter_ready_ms: from spawning the exporter to its "ready" line.

``python -m bench.exporter_bench [--quick]`` prints the results as one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tether import Driver, export, export_stream

__all__ = ["BenchSink", "run"]

CHUNK = 1 << 20
STREAM_MB = 256
ROOT = Path(__file__).resolve().parent.parent


class _Discard:
    accepts_buffers = True

    def __init__(self, owner: BenchSink) -> None:
        self.received = 0
        self._owner = owner
        self._eof = asyncio.Event()

    async def send(self, data: bytes) -> None:
        self.received += len(data)

    async def send_eof(self) -> None:
        # Counted before the driver ends its side, so ``total()`` after the stream is exact.
        self._owner._total += self.received
        self._eof.set()

    async def receive(self) -> bytes:
        await self._eof.wait()
        return b""


class BenchSink(Driver):
    """Discards byte streams (``sink``); ``total()`` is what closed streams received."""

    _total: int = 0

    @export_stream
    @asynccontextmanager
    async def sink(self) -> AsyncIterator[_Discard]:
        yield _Discard(self)

    @export
    async def total(self) -> int:
        return self._total


def _start_exporter(work: Path) -> tuple[subprocess.Popen[str], str, float, str]:
    from tether.exporter import generate_token, hash_token, init_lab_certs

    certs = init_lab_certs(work / "certs")
    token = generate_token()
    config = work / "bench.yaml"
    config.write_text(
        "name: bench\n"
        f"tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}\n"
        f"tokens: [{hash_token(token)}]\n"
        "export:\n"
        "  power: {type: tether.drivers.power.MockPower}\n"
        "  sink: {type: bench.exporter_bench.BenchSink}\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    tether_cmd = Path(sys.executable).parent / "tether"
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(tether_cmd), "exporter", "serve", str(config), "--listen", "tls://127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert process.stdout is not None
    url = ""
    for line in process.stdout:
        line = line.strip()
        if line.startswith("listening on "):
            url = line.removeprefix("listening on ")
        elif line == "ready":
            break
    else:
        process.wait()
        raise RuntimeError(f"the exporter exited with status {process.returncode}")
    ready_ms = (time.perf_counter() - started) * 1e3
    return process, url, ready_ms, f"{token}\n{certs.ca}"


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, every thread (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(quick: bool = False) -> dict[str, Any]:
    """Measure calls and byte-stream throughput through an exporter process over TLS."""
    import tether
    from bench._report import time_calls

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp:
        process, url, ready_ms, secrets = _start_exporter(Path(tmp))
        token, ca = secrets.split("\n")
        try:
            with tether.connect(url, token=token, ca=ca) as dut:
                stats = time_calls(
                    dut.power.on,
                    count=2000 if quick else 20000,
                    seconds=1.0 if quick else 3.0,
                    warmup=200,
                )
                results["tls_call_p50_us"] = stats["p50_us"]
                results["tls_call_p99_us"] = stats["p99_us"]
                results["tls_calls_per_s"] = stats["per_s"]
                megabytes = 64 if quick else STREAM_MB
                block = os.urandom(CHUNK)
                with dut.sink.stream("sink") as warm:
                    warm.send(block)
                server_cpu, client_cpu = _cpu_seconds(process.pid), time.process_time()
                started = time.perf_counter()
                with dut.sink.stream("sink") as stream:
                    for _ in range(megabytes):
                        stream.send(block)
                elapsed = time.perf_counter() - started
                server_cpu = _cpu_seconds(process.pid) - server_cpu
                client_cpu = time.process_time() - client_cpu
                expected = (megabytes + 1) * CHUNK
                total = dut.sink.call("total")
                if total != expected:
                    raise RuntimeError(f"the sink got {total} bytes, expected {expected}")
                results["tls_stream_mb_s"] = megabytes * CHUNK / elapsed / 1e6
                # CPU seconds per GB on each side: what the stream costs, whatever the load.
                gigabytes = megabytes * CHUNK / 1e9
                results["tls_stream_server_cpu_s_per_gb"] = server_cpu / gigabytes
                results["tls_stream_client_cpu_s_per_gb"] = client_cpu / gigabytes
                results["exporter_ready_ms"] = ready_ms
        finally:
            process.terminate()
            process.wait(30)
            if process.stdout is not None:
                process.stdout.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    print(json.dumps(run(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
