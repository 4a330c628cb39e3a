"""The router relay against a direct connection: call latency and byte-stream throughput.

``run(quick=False) -> dict`` measures, over TLS on 127.0.0.1:

* direct: the client dials the exporter's TLS listener (``ServerProtocol``), as ``tether.connect``;
* relay: the client and the exporter both dial the router relay (TLS), which splices them.

Client, router and exporter are three processes, as in a lab (``--router DIR`` and
``--exporter DIR RELAY SINK_PORT`` run the two children); the exporter process serves the
direct connection and the relayed one (each with its own tree of the same drivers).

Metrics: ``direct_call_p50_us`` / ``relay_call_p50_us`` (``MockPower.on()``),
``direct_bytes_mb_s`` / ``relay_bytes_mb_s`` (64 KiB blocks through ``TcpNetwork`` to a
discarding sink), and the ratios ``relay_call_ratio`` (target <= 2) and
``relay_bytes_ratio`` (target >= 0.6). ``python -m bench.relay_bench [--quick]`` prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._report import time_calls
from bench._sockets import LOOPBACK, Sink, stream_mb_s

__all__ = ["run"]

# The relay's test harness (``RelayLab``) lives with the tests: see tests/relaylab.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

CHUNK = 64 * 1024


def _calls(client: Any) -> float:
    """p50 of up to 3000 calls (one second at most): one round."""
    stats = time_calls(client.on, count=3000, seconds=1.0, warmup=200)
    return float(stats["p50_us"])


def _bytes(client: Any, sink: Sink) -> float:
    """MB/s of one second (256 MiB at most) of 64 KiB blocks: one round."""
    speed, _ = stream_mb_s(client, sink, chunk=CHUNK, max_bytes=256 * 1024 * 1024, seconds=1.0)
    return speed


def _make_driver(sink_port: int) -> Any:
    from tether.drivers.composite import Composite
    from tether.drivers.network import TcpNetwork
    from tether.drivers.power import MockPower

    return Composite(
        children={"power": MockPower(), "net": TcpNetwork(host=LOOPBACK, port=sink_port)}
    )


def _child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.relay_bench", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _first_line(child: subprocess.Popen[str], what: str) -> str:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    if not line:
        raise RuntimeError(f"the {what} child process did not start")
    return line


def _serve_router(directory: Path) -> None:
    """Child process: run a router with one lease, print its URL, stop at stdin EOF."""
    from relaylab import RelayLab

    with RelayLab(directory) as lab:
        lab.add_lease("bench", None)
        print(lab.url, flush=True)
        sys.stdin.read()


def _serve_exporter(directory: Path, relay: str, sink_port: int) -> None:
    """Child process: serve a tree directly (TLS listener) and, as another session, through
    the relay; print the direct URL once both are up; stop at stdin EOF."""
    from relaylab import RelayLab
    from tether.driver import DriverHost
    from tether.security import server_ssl_context
    from tether.testing._serve import LocalSession
    from tether.wire import ServerProtocol

    with RelayLab(directory, router_url=relay) as lab:
        lab.add_lease("bench", lambda: _make_driver(sink_port))
        host = DriverHost(_make_driver(sink_port), "root")
        session = LocalSession(host)
        context = server_ssl_context(directory / "server.pem", directory / "server.key")

        async def start() -> asyncio.Server:
            await host.start()
            return await asyncio.get_running_loop().create_server(
                lambda: ServerProtocol(session.resolve), LOOPBACK, 0, ssl=context
            )

        server = lab.exporter_thread.run(start())
        print(f"tls://{LOOPBACK}:{server.sockets[0].getsockname()[1]}", flush=True)
        sys.stdin.read()

        async def stop() -> None:
            for protocol in list(session.protocols):
                protocol.close()
            server.close()
            await host.stop()

        lab.exporter_thread.run(stop())


@contextlib.contextmanager
def _clients(directory: Path, sink_port: int) -> Iterator[tuple[Any, Any]]:
    """The direct and the relayed client trees; router and exporter are child processes."""
    from tether.client import dial_relay
    from tether.driver import ClientPolicy, build_client_tree
    from tether.security import client_ssl_context
    from tether.wire import ClientConnection, connect_socket, parse_address

    context = client_ssl_context(directory / "ca.pem")
    children = [_child("--router", str(directory))]
    connections: list[ClientConnection] = []
    try:
        relay = _first_line(children[0], "router")
        children.append(_child("--exporter", str(directory), relay, str(sink_port)))
        direct_url = _first_line(children[1], "exporter")
        sockets = [
            connect_socket(parse_address(direct_url), ssl_context=context),
            dial_relay(relay, "bench", "client-token", ssl_context=context)[0],
        ]
        trees = []
        for sock in sockets:
            connection = ClientConnection(sock, keepalive=None)
            connections.append(connection)
            report = connection.server_meta["report"]
            trees.append(build_client_tree(report, connection, ClientPolicy(unsafe=True)))
        yield trees[0], trees[1]
    finally:
        for connection in connections:
            connection.close()
        for child in reversed(children):
            if child.stdin is not None:
                child.stdin.close()
            child.wait(30)


def run(quick: bool = False) -> dict[str, Any]:
    """Direct and relayed figures, and the ratios against the targets.

    Both connections stay open while the rounds alternate (direct, relay, direct, ...), so a
    change in machine load hits both alike; each figure is the median over the rounds, and
    each ratio the median of the per-round ratios.
    """
    from statistics import median

    from tether.security import init_lab_certs

    rounds = 3 if quick else 7
    calls: dict[str, list[float]] = {"direct": [], "relay": []}
    speeds: dict[str, list[float]] = {"direct": [], "relay": []}
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp, Sink() as sink:
        init_lab_certs(tmp)
        with _clients(Path(tmp), sink.port) as (direct, relay):
            duts = {"direct": direct, "relay": relay}
            for _ in range(rounds):
                for name, dut in duts.items():
                    calls[name].append(_calls(dut.power))
                    speeds[name].append(_bytes(dut.net, sink))
    out: dict[str, Any] = {
        "direct_call_p50_us": median(calls["direct"]),
        "relay_call_p50_us": median(calls["relay"]),
        "direct_bytes_mb_s": median(speeds["direct"]),
        "relay_bytes_mb_s": median(speeds["relay"]),
        "relay_call_ratio": median(
            r / d for r, d in zip(calls["relay"], calls["direct"], strict=True)
        ),
        "relay_bytes_ratio": median(
            r / d for r, d in zip(speeds["relay"], speeds["direct"], strict=True)
        ),
        "rounds": rounds,
    }
    out["targets"] = {"relay_call_ratio": "<= 2.0", "relay_bytes_ratio": ">= 0.6"}
    out["meets_targets"] = out["relay_call_ratio"] <= 2.0 and out["relay_bytes_ratio"] >= 0.6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--router", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--exporter", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.router:
        _serve_router(Path(args.router))
        return
    if args.exporter:
        directory, relay, sink_port = args.exporter
        _serve_exporter(Path(directory), relay, int(sink_port))
        return
    print(json.dumps(run(quick=args.quick), indent=2))


if __name__ == "__main__":
    main()
