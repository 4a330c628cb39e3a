"""Test kit figures: what one deterministic driver unit test costs.

``bench_driver_under_test(quick) -> dict`` measures the ``dut_start_call_stop_ms`` row of the
table: a fresh ``DriverRuntime``, a ``TestNode`` and its start args, a ``DriverUnderTest`` of
``MockPower`` started, one direct ``on()`` call, ``prepare_stop`` and ``stop``, all on the
foreground, then the runtime closed. The median of many runs, in milliseconds.

``python -m bench.testkit_bench [--quick]`` prints the result as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from bench._report import median

__all__ = ["bench_driver_under_test"]


def _once() -> None:
    from tether.drivers.power import MockPower
    from tether.testing import DriverRuntime, DriverUnderTest, TestNode

    with DriverRuntime() as runtime:
        start_args, _incoming, _outgoing = TestNode("root").create_start_args_and_serve()
        dut = DriverUnderTest(MockPower)
        runtime.run_to_completion(dut.start(start_args))
        runtime.run_to_completion(dut.driver.on())
        runtime.run_to_completion(dut.prepare_stop())
        dut.stop()


def bench_driver_under_test(quick: bool = False) -> dict[str, Any]:
    """Start a MockPower under the test kit, call ``on()`` directly, stop it (API.md).

    Returns:
        ``dut_start_call_stop_ms`` (median) and ``dut_start_call_stop_n`` (runs timed).
    """
    for _ in range(20):  # warm-up: imports, class-level caches, the parked foreground loop
        _once()
    count = 200 if quick else 5000
    seconds = 0.5 if quick else 3.0
    clock = time.perf_counter
    samples: list[float] = []
    deadline = clock() + seconds
    for _ in range(count):
        start = clock()
        _once()
        samples.append((clock() - start) * 1e3)
        if clock() >= deadline:
            break
    return {"dut_start_call_stop_ms": median(samples), "dut_start_call_stop_n": len(samples)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.testkit_bench")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    sys.stdout.write(json.dumps(bench_driver_under_test(args.quick)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
