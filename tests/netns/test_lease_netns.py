"""The whole set-up across network namespaces, as processes: ``tether controller serve`` with
its relay in one namespace, ``tether exporter serve`` (controller agent, no listener) behind a
firewall that rejects every inbound connection, and ``tether.lease`` in a third namespace with no
route to the exporter."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tether.controller import Admin, Database

TETHER = str(Path(sys.executable).with_name("tether"))
EXPORT = """
export:
  power: {type: tether.drivers.power.MockPower}
"""


def test_lease_through_the_relay_across_namespaces(netns_lab: Any, tmp_path: Path) -> None:
    lab = netns_lab
    database = f"sqlite:///{tmp_path / 'controller.db'}"
    db = Database(database)
    db.migrate()
    admin = Admin(db)
    ca = lab.certs / "ca.pem"
    bench = admin.create_exporter("bench-1", {"board": "rpi4"})
    exporter_config = tmp_path / "bench.yaml"
    exporter_config.write_text(bench.config(f"https://{lab.ROUTER_TO_EXPORTER}:8443", ca) + EXPORT)
    alice_config = tmp_path / "alice.yaml"
    alice_config.write_text(
        admin.create_client("alice").config(f"https://{lab.ROUTER_TO_CLIENT}:8443", ca)
    )

    serve = ["controller", "serve", "--listen", "https://0.0.0.0:8443", "--database", database]
    serve += ["--relay-listen", "tls://0.0.0.0:8444"]
    serve += [
        "--tls-cert",
        str(lab.certs / "server.pem"),
        "--tls-key",
        str(lab.certs / "server.key"),
    ]
    controller = lab.spawn(lab.router_ns, TETHER, *serve)
    ready = controller.read_line()
    assert "tether controller ready at https://0.0.0.0:8443 relay tls://0.0.0.0:8444" in ready
    exporter = lab.spawn(lab.exporter_ns, TETHER, "exporter", "serve", str(exporter_config))
    client = lab.start(lab.client_ns, "lease", str(alice_config), "board=rpi4")
    assert exporter.read_line().strip() == "ready"

    granted = client.read()  # queued until the exporter registered, then served
    assert granted["exporters"] == ["bench-1"]
    assert client.send(call="power.on") == {"value": None}
    assert client.send(call="power.status") == {"value": True}
    # Meanwhile the exporter host accepted no connection and the client cannot route to it.
    assert lab.probe(lab.client_ns, lab.EXPORTER, 7000) == "ENETUNREACH"
    assert lab.probe(lab.router_ns, lab.EXPORTER, 7000) == "ECONNREFUSED"

    # Releasing from elsewhere (the CLI, same client) cuts the connection at once.
    release = ["lease", "release", granted["lease"], "--config", str(alice_config)]
    released = lab.spawn(lab.client_ns, TETHER, *release)
    assert released.read_line().strip() == f"lease {granted['lease']}: ended"
    answer = client.send(call="power.status")
    assert answer["error"] == "LeaseEnded", answer  # a ConnectionLost that says why
    assert f"the lease {granted['lease']} was ended: released" in answer["message"], answer
    assert client.send(exit=True) == {"released": True}
