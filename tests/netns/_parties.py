"""The three parties of the network-namespace tests, each run in its own namespace with
``ip netns exec NS python tests/netns/_parties.py ROLE ...``.

They talk to the test over stdin/stdout, one JSON object a line:

* ``router CERTS LISTEN``: a relay router on ``LISTEN:8444``; prints ``{"url"}``; stdin ``{"end": LEASE}`` cuts a
  lease and prints ``{"cut": n}``.
* ``exporter CERTS RELAY LISTEN_HOST``: serves lease ``L1`` (MockPower) through the relay, and
  also listens on ``LISTEN_HOST:7000`` (to show inbound connections are dropped); prints
  ``{"ready": true}``, and ``{"relay_ended": true}`` when the router ends its lease.
* ``client CERTS RELAY``: leases nothing itself; dials the relay for ``L1`` when stdin says
  ``{"dial": true}`` (answering ``{"connected": true}``), then runs commands from stdin (``{"call": "on"}`` -> ``{"value": ...}`` or ``{"error": type}``).
* ``lease CONFIG SELECTOR``: ``tether.lease`` with a client config file; prints ``{"lease",
  "exporters"}``, runs ``{"call": "power.on"}`` commands, leaves at ``{"exit": true}``.
* ``probe HOST PORT``: one TCP connect; prints ``{"result": "connected" | errno name}``.

Every party exits at stdin EOF.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the relaylab harness


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def router(certs: str, listen: str) -> None:
    from relaylab import RelayLab

    with RelayLab(Path(certs), listen_host=listen, listen_port=8444) as lab:
        lab.add_lease("L1", None)
        say(url=lab.url)
        for line in sys.stdin:
            command = json.loads(line)
            say(cut=lab.end_lease(command["end"]))


def _client_context(certs: str) -> Any:
    from tether.security import client_ssl_context

    return client_ssl_context(Path(certs) / "ca.pem")


def exporter(certs: str, relay: str, listen_host: str) -> None:
    from tether.driver import DriverHost
    from tether.drivers.power import MockPower
    from tether.exporter import LeaseRelay
    from tether.testing._serve import LocalSession
    from tether.wire import LoopThread, ServerProtocol

    inbound = socket.create_server((listen_host, 7000))
    thread = LoopThread("exporter")

    async def serve() -> None:
        host = DriverHost(MockPower(), "root")
        await host.start()
        session = LocalSession(host)
        relay_loop = LeaseRelay(
            relay,
            "L1",
            "exporter-token",
            lambda: ServerProtocol(session.resolve),
            ssl_context=_client_context(certs),
            retry=0.05,  # the router party may still be importing
            max_retry=0.2,
        )
        task = asyncio.get_running_loop().create_task(relay_loop.run())
        await relay_loop.ready.wait()
        say(ready=True)
        await task
        say(relay_ended=True)

    future = thread.submit(serve())
    sys.stdin.read()
    future.cancel()
    thread.close()
    inbound.close()


def client(certs: str, relay: str) -> None:
    from tether.client import dial_relay
    from tether.driver import ClientPolicy, build_client_tree
    from tether.wire import ClientConnection

    context = _client_context(certs)
    sys.stdin.readline()  # {"dial": true}: the exporter's dial is waiting now
    sock, _ = dial_relay(relay, "L1", "client-token", ssl_context=context)
    connection = ClientConnection(sock, keepalive=None)
    dut = build_client_tree(connection.server_meta["report"], connection, ClientPolicy())
    say(connected=True)
    for line in sys.stdin:
        command = json.loads(line)
        try:
            say(value=getattr(dut, command["call"])())
        except Exception as exc:
            say(error=type(exc).__name__, message=str(exc))
    connection.close()


def lease(config: str, selector: str) -> None:
    import tether

    with tether.lease(selector, "5m", config=config, progress=False) as dut:
        lease = dut.session.lease  # type: ignore[attr-defined]
        say(lease=lease.id, exporters=list(lease.exporters))
        for line in sys.stdin:
            command = json.loads(line)
            if command.get("exit"):
                break
            node, method = command["call"].rsplit(".", 1)
            try:
                say(value=getattr(getattr(dut, node), method)())
            except Exception as exc:
                say(error=type(exc).__name__, message=str(exc))
    say(released=True)


def probe(host: str, port: str) -> None:
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            say(result="connected")
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        say(result=name)


if __name__ == "__main__":
    roles = {
        "router": router,
        "exporter": exporter,
        "client": client,
        "lease": lease,
        "probe": probe,
    }
    roles[sys.argv[1]](*sys.argv[2:])
