"""The relay across network namespaces: the exporter accepts no inbound connection and the
client has no route to it, yet the lease holder drives it through the router, until the lease
ends."""

from __future__ import annotations

from typing import Any

PORT = 8444  # the router party's port, in its own namespace


def start_parties(lab: Any) -> tuple[Any, Any, Any]:
    """Start the three parties at once (their imports overlap); the exporter retries its dial
    until the router listens, and the client dials when told to."""
    certs = str(lab.certs)
    router = lab.start(lab.router_ns, "router", certs, "0.0.0.0")
    exporter = lab.start(
        lab.exporter_ns, "exporter", certs, f"tls://{lab.ROUTER_TO_EXPORTER}:{PORT}", lab.EXPORTER
    )
    client = lab.start(lab.client_ns, "client", certs, f"tls://{lab.ROUTER_TO_CLIENT}:{PORT}")
    assert router.read() == {"url": f"tls://0.0.0.0:{PORT}"}
    assert exporter.read() == {"ready": True}
    return router, exporter, client


def test_the_lease_holder_reaches_the_exporter_only_through_the_relay(netns_lab: Any) -> None:
    router, exporter, client = start_parties(netns_lab)
    assert client.send(dial=True) == {"connected": True}
    assert client.send(call="on") == {"value": None}
    assert client.send(call="status") == {"value": True}

    # Meanwhile nobody can open a connection to the exporter host: it listens on
    # EXPORTER:7000, but only its own namespace gets through.
    lab = netns_lab
    assert lab.probe(lab.exporter_ns, lab.EXPORTER, 7000) == "connected"
    before = lab.firewall_rejections()
    assert lab.probe(lab.router_ns, lab.EXPORTER, 7000) == "ECONNREFUSED"
    assert lab.firewall_rejections() == before + 1
    assert lab.probe(lab.client_ns, lab.EXPORTER, 7000) == "ENETUNREACH"

    # Ending the lease at the router cuts the spliced connection and stops the exporter's dials.
    assert router.send(end="L1") == {"cut": 1}
    assert client.send(call="status")["error"] == "ConnectionLost"
    assert exporter.read() == {"relay_ended": True}
