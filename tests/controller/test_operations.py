"""Running the lab: maintenance, health, admin lease ends, the audit log, the whole queue,
Prometheus metrics. A real controller over TLS on loopback."""

from __future__ import annotations

import re
from typing import Any

import httpx
from labkit import lease, online

from tether.controller.testing import ControllerHandle, FakeClock


def status_of(http: httpx.Client, name: str) -> dict[str, Any]:
    found = http.get("/v1/exporters").json()["exporters"]
    return next(e for e in found if e["name"] == name)


def test_maintenance_takes_an_exporter_out_of_the_pool_and_back(
    ctl: ControllerHandle, alice: httpx.Client, root: httpx.Client
) -> None:
    online(ctl, "bench-1", {"board": "rpi4"})
    answer = root.post(
        "/v1/admin/exporters/bench-1/maintenance", json={"on": True, "reason": "new SD card"}
    )
    assert answer.status_code == 200, answer.text
    shown = status_of(alice, "bench-1")
    assert shown["status"] == "maintenance" and shown["maintenance"] == "new SD card"
    waiting = lease(alice, selector="board=rpi4")
    assert waiting["state"] == "pending"
    root.post("/v1/admin/exporters/bench-1/maintenance", json={"on": False})
    granted = alice.get(f"/v1/leases/{waiting['id']}").json()
    assert granted["state"] == "ready" and granted["exporters"] == ["bench-1"]


def test_maintenance_with_end_lease_ends_the_live_lease_with_a_reason(
    ctl: ControllerHandle, alice: httpx.Client, root: httpx.Client
) -> None:
    online(ctl, "bench-1", {"board": "rpi4"})
    held = lease(alice, selector="board=rpi4")
    answer = root.post(
        "/v1/admin/exporters/bench-1/maintenance",
        json={"on": True, "reason": "smoke", "end_lease": True},
    ).json()
    assert answer["ended_leases"] == [held["id"]]
    ended = alice.get(f"/v1/leases/{held['id']}").json()
    assert ended["state"] == "ended" and "maintenance (smoke)" in ended["reason"]


def test_an_unhealthy_exporter_is_not_granted_until_its_check_passes(
    ctl: ControllerHandle, alice: httpx.Client
) -> None:
    exporter = online(ctl, "bench-1", {"board": "rpi4"})
    failed = exporter.post("/v1/exporter/health", json={"ok": False, "output": "no console"})
    assert failed.status_code == 200
    shown = status_of(alice, "bench-1")
    assert shown["status"] == "unhealthy" and shown["health"] == "no console"
    waiting = lease(alice, selector="board=rpi4")
    assert waiting["state"] == "pending"
    exporter.post("/v1/exporter/health", json={"ok": True})
    assert alice.get(f"/v1/leases/{waiting['id']}").json()["state"] == "ready"
    assert status_of(alice, "bench-1")["status"] == "leased"


def test_a_request_only_out_of_pool_exporters_could_serve_says_why_it_waits(
    ctl: ControllerHandle, clock: FakeClock, alice: httpx.Client, root: httpx.Client
) -> None:
    sick = online(ctl, "bench-1", {"board": "rpi4"})
    online(ctl, "bench-2", {"board": "rpi4"})
    online(ctl, "bench-3", {"board": "imx8"})
    root.post("/v1/admin/exporters/bench-2/maintenance", json={"on": True, "reason": "new SD"})
    assert sick.post("/v1/exporter/health", json={"ok": False, "output": "no console\n"}).is_success
    waiting = lease(alice, selector="board=rpi4")
    assert waiting["state"] == "pending"
    why = (
        "waiting: the only matching exporters are out of the pool: "
        "bench-1 unhealthy (no console), bench-2 in maintenance (new SD)"
    )
    assert waiting["waiting"] == why
    assert alice.get(f"/v1/leases/{waiting['id']}").json()["waiting"] == why
    assert alice.get("/v1/queue").json()["leases"][0]["waiting"] == why

    assert sick.post("/v1/exporter/health", json={"ok": True}).is_success  # granted now
    assert alice.get(f"/v1/leases/{waiting['id']}").json()["state"] == "ready"
    one = lease(alice, selector="board=rpi4")
    assert one["waiting"] is None  # bench-1 is leased, not out of the pool: it waits its turn
    alice.delete(f"/v1/leases/{one['id']}")

    # Only one match, in maintenance; then only one match, offline.
    lone = lease(alice, exporter="bench-2")
    assert lone["waiting"] == (
        "waiting: the only matching exporter is in maintenance: bench-2 (new SD)"
    )
    clock.advance(6)  # past the heartbeat timeout: everyone is offline
    quiet = lease(alice, selector="board=imx8")
    assert quiet["waiting"] == "waiting: the only matching exporter is offline: bench-3"


def test_only_admins_use_the_admin_routes(
    ctl: ControllerHandle, alice: httpx.Client, root: httpx.Client
) -> None:
    online(ctl, "bench-1", {})
    refused = alice.post("/v1/admin/exporters/bench-1/maintenance", json={"on": True})
    assert refused.status_code == 403
    assert "needs an admin token" in refused.json()["message"]
    assert alice.get("/v1/admin/audit").status_code == 403
    # An admin cannot lease: admins run the lab, clients use it.
    assert root.post("/v1/leases", json={"selector": "", "duration": 60}).status_code == 403
    missing = root.post("/v1/admin/exporters/nope/maintenance", json={"on": True})
    assert missing.status_code == 404


def test_an_admin_ends_someone_elses_lease(
    ctl: ControllerHandle, alice: httpx.Client, root: httpx.Client
) -> None:
    online(ctl, "bench-1", {})
    held = lease(alice, selector="")
    ended = root.post(f"/v1/admin/leases/{held['id']}/end").json()
    assert ended["state"] == "ended" and ended["reason"].startswith("ended by root")
    assert alice.get(f"/v1/leases/{held['id']}").json()["state"] == "ended"


def test_the_audit_log_records_who_did_what_from_where(
    ctl: ControllerHandle, alice: httpx.Client, root: httpx.Client, clock: FakeClock
) -> None:
    online(ctl, "bench-1", {})
    held = lease(alice, selector="", duration=60)
    alice.post(f"/v1/leases/{held['id']}/extend", json={"duration": 30})
    alice.delete(f"/v1/leases/{held['id']}")
    second = lease(alice, selector="", duration=60)
    clock.advance(120)
    ctl.poke()
    assert (
        alice.get(f"/v1/leases/{second['id']}", params={"wait": 10, "state": "ready"}).json()[
            "state"
        ]
        == "expired"
    )
    with ctl.http("not-a-token") as stranger:
        for _ in range(3):
            assert stranger.get("/v1/whoami").status_code == 401
    root.post("/v1/admin/exporters/bench-1/maintenance", json={"on": True, "reason": "fan"})
    found = root.get("/v1/admin/audit").json()["entries"]
    actions = [(e["action"], e["target"], e["actor"]) for e in found]
    assert ("create_client", "alice", "controller") in actions
    assert ("grant", held["id"], "controller") in actions
    assert ("extend", held["id"], "alice") in actions
    assert ("release", held["id"], "alice") in actions
    assert ("expire", second["id"], "controller") in actions
    assert ("maintenance_on", "bench-1", "root") in actions
    release = next(e for e in found if e["action"] == "release")
    assert release["address"] == "127.0.0.1"
    # The first failure from an address is written at once; the upkeep adds later counts.
    failures = [e for e in found if e["action"] == "auth_failure"]
    assert failures[0]["details"] == {"count": 1} and failures[0]["target"] == "127.0.0.1"
    assert sum(e["details"]["count"] for e in failures) <= 3
    only = root.get("/v1/admin/audit", params={"action": "grant"}).json()["entries"]
    assert {e["action"] for e in only} == {"grant"} and len(only) == 2


def test_the_whole_queue_in_serving_order(ctl: ControllerHandle, alice: httpx.Client) -> None:
    online(ctl, "bench-1", {})
    lease(alice, selector="")
    with ctl.http(ctl.admin.create_client("bob").token) as bob:
        first = lease(alice, selector="")
        second = lease(bob, selector="")
        queue = bob.get("/v1/queue").json()
    assert queue["total"] == 2
    assert [(q["id"], q["client"], q["position"]) for q in queue["leases"]] == [
        (first["id"], "alice", 1),
        (second["id"], "bob", 2),
    ]


def sample(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    match = re.search(r"^" + pattern + "$", text, re.M)
    assert match, f"{name} {labels} not in metrics"
    return float(match.group(1))


def test_metrics_count_the_lab(
    ctl: ControllerHandle, alice: httpx.Client, clock: FakeClock
) -> None:
    online(ctl, "bench-1", {})
    online(ctl, "bench-2", {})
    with ctl.http() as anonymous:
        before = anonymous.get("/metrics")
        assert before.status_code == 200
        assert before.headers["content-type"].startswith("text/plain")
        clock.advance(1)  # grants are counted from the previous scrape on
        lease(alice, selector="")
        lease(alice, selector="", count=2)
        text = anonymous.get("/metrics").text
    assert sample(text, "tether_leases", state="ready") == 1
    assert sample(text, "tether_leases", state="pending") == 1
    assert sample(text, "tether_queue_length") == 1
    assert sample(text, "tether_exporters", status="leased") == 1
    assert sample(text, "tether_exporters", status="available") == 1
    assert sample(text, "tether_lease_grants_total") == 1
    assert sample(text, "tether_lease_wait_seconds_count") == 1
    route = 'method="POST",route="/v1/leases",status="201"'
    assert re.search(r"tether_api_request_duration_seconds_count\{" + re.escape(route), text)


def test_api_latency_counts_refusals_and_route_templates(ctl: ControllerHandle) -> None:
    exporter = online(ctl, "bench-9", {})
    with ctl.http("not-a-token") as stranger:
        assert exporter.post("/v1/exporter/heartbeat", json={}).status_code == 200
        assert exporter.post("/v1/exporter/heartbeat", json={"status": "x"}).status_code == 422
        assert stranger.get("/v1/leases").status_code == 401  # refused before routing
        text = exporter.get("/metrics").text
    count = "tether_api_request_duration_seconds_count"
    beat = {"method": "POST", "route": "/v1/exporter/heartbeat"}
    assert sample(text, count, **beat, status="200") == 1
    assert sample(text, count, **beat, status="422") == 1
    assert sample(text, count, method="GET", route="unmatched", status="401") == 1
