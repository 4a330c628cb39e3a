"""tether in two minutes: serve drivers, call them, stream bytes, see what it costs.

Run with `make demo`. Everything runs on this machine: a power switch and a network port to a
local echo server, served over tether's real wire protocol.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time

from rich.console import Console
from rich.table import Table

from tether.drivers.composite import Composite
from tether.drivers.network import TcpNetwork
from tether.drivers.power import MockPower
from tether.errors import InvalidArgument, MethodNotFound
from tether.testing import serve

console = Console()


def echo_server() -> tuple[socket.socket, int]:
    server = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(1 << 20):
                conn.sendall(data)

    threading.Thread(target=serve_one, daemon=True).start()
    return server, server.getsockname()[1]


def main() -> None:
    server, port = echo_server()
    lab = Composite(
        children={
            "power": MockPower(voltage=5.1, samples=3),
            "ssh": TcpNetwork(host="127.0.0.1", port=port, description="the DUT's ssh port"),
        }
    )
    steps = Table("step", "result", "time", title="tether demo")
    with serve(lab, name="bench-1") as dut:
        for path, client in dut.walk():
            if path and path != "bench-1":
                console.print(f"  [bold]{path}[/]: {client.report['interface']} "
                              f"({', '.join(client.methods)})")

        start = time.perf_counter()
        dut.power.on()
        steps.add_row("power on", str(dut.power.status()), _ms(start))

        start = time.perf_counter()
        readings = list(dut.power.read())
        steps.add_row("read samples (streaming)", f"{readings[0].voltage} V x{len(readings)}",
                      _ms(start))

        latencies = []
        for _ in range(2000):
            t0 = time.perf_counter()
            dut.power.status()
            latencies.append(time.perf_counter() - t0)
        steps.add_row("2000 calls", f"p50 {statistics.median(latencies) * 1e6:.0f} us",
                      f"{sum(latencies) * 1e3:.0f} ms")

        payload = bytes(range(256)) * 4096 * 16  # 16 MiB
        start = time.perf_counter()
        received = bytearray()
        with dut.ssh.connect() as stream:
            sender = threading.Thread(target=lambda: (stream.send(payload), stream.send_eof()))
            sender.start()
            while chunk := stream.receive():
                received += chunk
            sender.join()
        elapsed = time.perf_counter() - start
        ok = "intact" if bytes(received) == payload else "CORRUPTED"
        steps.add_row("16 MiB round trip via ssh port", f"{ok}, {32 / elapsed:.0f} MB/s",
                      _ms(start))

        for label, action in (
            ("bad argument", lambda: dut.power.call("on", "now")),
            ("unexported method", lambda: dut.power.call("stop")),
        ):
            try:
                action()
            except (InvalidArgument, MethodNotFound) as exc:
                steps.add_row(label, f"{type(exc).__name__}: {exc}", "-")

        dut.power.off()
        steps.add_row("power off", str(dut.power.status()), "-")
    server.close()
    console.print(steps)
    console.print("Drivers stopped; see README.md for exporters, the shell and `dut`.")


def _ms(start: float) -> str:
    return f"{(time.perf_counter() - start) * 1e3:.2f} ms"


if __name__ == "__main__":
    main()
