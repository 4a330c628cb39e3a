"""The CPU cost of one call without I/O or threads: the figure to optimise the call path by.

``python -m bench.callpath_bench [N]`` runs ``MockPower.on()`` N times (20,000) through the
real client (``ClientConnection`` over a transport that feeds the server directly), the real
``ServerProtocol`` on an asyncio loop stepped by hand, and the real ``CallDispatcher``: no
socket, no second thread, no spin. It prints the best of five rounds of CPU time per call,
split into the client's part and the server's (``time.thread_time``).

Timings move with the load of a shared machine; instruction counts do not. For those, run it
under callgrind with ``CALLGRIND=1``, which counts only the N measured calls::

    CALLGRIND=1 valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no \\
        --toggle-collect=functools_reduce python -m bench.callpath_bench 2000

and divide the "Collected" count by N. The loop is stepped through ``_run_once`` (asyncio's
own, private): this is a measuring tool, not a way to run a server.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import time
from typing import Any

from tether.driver import CallDispatcher, ClientPolicy, DriverHost, build_client_tree
from tether.drivers.power import MockPower
from tether.wire import ClientConnection, ClientTransport, ServerProtocol


class _Session:
    """The smallest session over one host (as ``tether.testing.serve``'s)."""

    def __init__(self, host: DriverHost) -> None:
        self.host = host
        self.handler = CallDispatcher(host)

    def attach(self, protocol: ServerProtocol) -> None:
        pass

    def detach(self, protocol: ServerProtocol) -> None:
        pass

    async def resolve(self, meta: dict[str, Any]) -> tuple[_Session, dict[str, Any]]:
        return self, {"report": self.host.report()}


class _Collect(asyncio.Transport):
    """The server's transport: keeps what the protocol writes."""

    def __init__(self) -> None:
        super().__init__()
        self.out: list[bytes] = []

    def write(self, data: Any) -> None:
        self.out.append(bytes(data))

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        pass


class _Direct(ClientTransport):
    """A client transport whose send runs the server until it has answered."""

    def __init__(self, protocol: ServerProtocol, loop: Any, collect: _Collect) -> None:
        self.protocol, self.loop, self.collect = protocol, loop, collect
        self.server_seconds = 0.0

    def send(self, parts: list[Any], counts: list[int]) -> None:
        data = b"".join(bytes(part) for part in parts)
        counts.append(len(data))
        start = time.thread_time()
        self.protocol.get_buffer(len(data))[: len(data)] = data
        self.protocol.buffer_updated(len(data))
        step = self.loop._run_once
        while not self.collect.out:
            step()
        while self.loop._ready:  # what the answer left to do (the task's end)
            step()
        self.server_seconds += time.thread_time() - start

    def receive(self, timeout: float | None, *, soon: bool = True) -> bytes:
        out = b"".join(self.collect.out)
        self.collect.out.clear()
        return out

    def receive_nowait(self) -> bytes | None:
        return self.receive(0) if self.collect.out else None


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 20000
    loop = asyncio.new_event_loop()
    host = DriverHost(MockPower(), "root")
    loop.run_until_complete(host.start())
    session = _Session(host)
    protocol = ServerProtocol(session.resolve)
    collect = _Collect()
    asyncio.events._set_running_loop(loop)  # the protocol runs "on" the loop
    protocol.connection_made(collect)
    transport = _Direct(protocol, loop, collect)
    connection = ClientConnection(transport, keepalive=None, handshake_timeout=None)
    client = build_client_tree(connection.server_meta["report"], connection, ClientPolicy())
    on = client.on
    for _ in range(2000):
        on()
    if os.environ.get("CALLGRIND"):
        subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True)
        for _ in range(200):  # callgrind_control takes effect asynchronously
            on()
        functools.reduce(lambda _, __: on(), range(count), None)
        return 0
    best: tuple[float, float] | None = None
    for _ in range(5):
        transport.server_seconds = 0.0
        start = time.thread_time()
        for _ in range(count):
            on()
        total = (time.thread_time() - start) / count * 1e6
        server = transport.server_seconds / count * 1e6
        if best is None or total < best[0]:
            best = (total, server)
    assert best is not None
    total, server = best
    print(f"CPU per call: {total:.1f} us (client {total - server:.1f}, server {server:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
