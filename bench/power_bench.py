"""SNMP and Modbus ``on`` through tether vs the library's own client, against the same peer.

``python -m bench.power_bench [--quick]`` prints one JSON object:

    snmp_on_p50_us: ``SnmpPower.on()`` (APC profile, v2c) from a ``tether.connect`` client
        through an exporter on ``tls://127.0.0.1`` (in this process, on its own thread) to
        net-snmp's snmpd (its own config, outlets behind ``pass_persist``);
    snmp_serve_on_p50_us: the same through ``tether.testing.serve()`` (in-process, no TLS);
    snmp_direct_on_p50_us: pysnmp's own ``set_cmd`` of the same OID and value to the same
        snmpd, one engine and transport kept, on one asyncio loop;
    modbus_on_p50_us / modbus_serve_on_p50_us / modbus_direct_on_p50_us: the same for
        ``ModbusPower.on()`` against pymodbus's own ``ModbusTcpServer`` (on a thread), the
        direct figure from pymodbus's ``AsyncModbusTcpClient.write_coil`` (one connection);
    snmp_on_ratio, modbus_on_ratio: ``serve()`` p50 / direct p50 (target: within 2x);
    snmp_tls_on_ratio, modbus_tls_on_ratio: the TLS exporter's p50 / direct p50.

The direct figures are timed inside one running loop (the library at its best); tether's are
timed as a user calls it, from a blocking client. pymodbus's server runs in its own process
(``modbus_server.py``) so it does not share this interpreter's GIL with the measured client.

The peers are the tests' (``tests/drivers/power_peers.py``). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench._report import percentile, time_calls

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "drivers"))

import power_peers  # noqa: E402  (the tests' peer launchers)

__all__ = ["run"]


@contextmanager
def _exporter(yaml_export: str) -> Iterator[Any]:
    import tether
    from tether.exporter import init_lab_certs, parse_config, run_exporter_in_thread

    with tempfile.TemporaryDirectory(prefix="tether-power-bench-") as tmp:
        certs = init_lab_certs(Path(tmp) / "certs")
        config = parse_config(
            f"name: power-bench\ntls: {{cert: {certs.server_cert}, key: {certs.server_key}}}\n"
            f"export:\n{yaml_export}",
            "power-bench.yaml",
        )
        with (
            run_exporter_in_thread(config, listen="tls://127.0.0.1:0") as running,
            tether.connect(running.url, running.token, ca=certs.ca) as dut,
        ):
            yield dut


def _timed(fn: Callable[[], object], quick: bool) -> float:
    count, seconds = (200, 3.0) if quick else (1000, 10.0)
    return time_calls(fn, count=count, seconds=seconds, warmup=20)["p50_us"]


async def _timed_async(fn: Callable[[], Awaitable[None]], quick: bool) -> float:
    """p50 of ``await fn()`` timed inside one running loop: the library at its best (no
    loop start and stop around each call)."""
    count, seconds = (200, 3.0) if quick else (1000, 10.0)
    for _ in range(20):
        await fn()
    clock = time.perf_counter_ns
    samples: list[float] = []
    deadline = clock() + int(seconds * 1e9)
    for _ in range(count):
        t0 = clock()
        await fn()
        t1 = clock()
        samples.append((t1 - t0) / 1e3)
        if t1 >= deadline:
            break
    return percentile(samples, 50)


def bench_snmp(quick: bool) -> dict[str, float]:
    from pysnmp.hlapi.v3arch import asyncio as hlapi

    from tether.drivers.power import SnmpPower
    from tether.testing import serve

    results: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="tether-snmpd-") as tmp,
        power_peers.run_snmpd(Path(tmp)) as agent,
    ):
        config = {"host": "127.0.0.1", "port": agent.port, "outlet": 1}
        secret = power_peers.COMMUNITY
        yaml = (
            "  pdu:\n    type: tether.drivers.power.SnmpPower\n"
            f"    config: {{host: 127.0.0.1, port: {agent.port}, outlet: 1, "
            f"community: {secret}}}\n"
        )
        with _exporter(yaml) as dut:
            results["snmp_on_p50_us"] = _timed(dut.pdu.on, quick)
        with serve(SnmpPower(community=secret, **config)) as power:
            results["snmp_serve_on_p50_us"] = _timed(power.on, quick)

        loop = asyncio.new_event_loop()
        engine = hlapi.SnmpEngine()
        target = loop.run_until_complete(
            hlapi.UdpTransportTarget.create(("127.0.0.1", agent.port), timeout=2, retries=1)
        )
        auth = hlapi.CommunityData(secret, mpModel=1)
        oid = f"{power_peers.APC_BASE}.1"

        async def direct() -> None:
            error, status, _, _ = await hlapi.set_cmd(
                engine,
                auth,
                target,
                hlapi.ContextData(),
                hlapi.ObjectType(hlapi.ObjectIdentity(oid), hlapi.Integer32(1)),
                lookupMib=False,
            )
            if error or status:
                raise RuntimeError(f"snmp set failed: {error or status.prettyPrint()}")

        results["snmp_direct_on_p50_us"] = loop.run_until_complete(_timed_async(direct, quick))
        engine.close_dispatcher()
        loop.close()
    baseline = results["snmp_direct_on_p50_us"]
    results["snmp_on_ratio"] = results["snmp_serve_on_p50_us"] / baseline
    results["snmp_tls_on_ratio"] = results["snmp_on_p50_us"] / baseline
    return results


def bench_modbus(quick: bool) -> dict[str, float]:
    from pymodbus.client import AsyncModbusTcpClient

    from tether.drivers.power import ModbusPower
    from tether.testing import serve

    results: dict[str, float] = {}
    with power_peers.run_modbus_server_process(coils=8) as port:
        yaml = (
            "  relay:\n    type: tether.drivers.power.ModbusPower\n"
            f"    config: {{host: 127.0.0.1, port: {port}, coil: 1}}\n"
        )
        with _exporter(yaml) as dut:
            results["modbus_on_p50_us"] = _timed(dut.relay.on, quick)
        with serve(ModbusPower(host="127.0.0.1", port=port, coil=1)) as power:
            results["modbus_serve_on_p50_us"] = _timed(power.on, quick)

        loop = asyncio.new_event_loop()

        async def connect() -> Any:
            client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
            if not await client.connect():
                raise RuntimeError("pymodbus client could not connect")
            return client

        client = loop.run_until_complete(connect())

        async def direct() -> None:
            response = await client.write_coil(1, True, device_id=1)
            if response.isError():
                raise RuntimeError(f"write_coil failed: {response}")

        results["modbus_direct_on_p50_us"] = loop.run_until_complete(_timed_async(direct, quick))
        client.close()
        loop.close()
    baseline = results["modbus_direct_on_p50_us"]
    results["modbus_on_ratio"] = results["modbus_serve_on_p50_us"] / baseline
    results["modbus_tls_on_ratio"] = results["modbus_on_p50_us"] / baseline
    return results


def run(quick: bool = False) -> dict[str, float]:
    """Both comparisons; figures in microseconds (p50 of one ``on`` each)."""
    import logging

    logging.getLogger("pymodbus").setLevel(logging.WARNING)
    return {**bench_snmp(quick), **bench_modbus(quick)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.power_bench")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.quick)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
