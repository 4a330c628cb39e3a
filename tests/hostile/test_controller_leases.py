"""Leases are exclusive and claimed: one agent an exporter, abandoned requests and grants end,
policy changes reach live leases, an exporter can end a lease it cannot serve."""

from __future__ import annotations

import httpx

from tether.controller import make_policy
from tether.controller.testing import ControllerHandle, FakeClock


def agent(ctl: ControllerHandle, token: str, instance: str) -> httpx.Client:
    http = ctl.http(token)
    http.headers["Tether-Agent"] = instance
    return http


def online(ctl: ControllerHandle, name: str, labels: dict[str, str]) -> str:
    exporter = ctl.admin.create_exporter(name, labels)
    with ctl.http(exporter.token) as http:
        assert http.post("/v1/exporter/register", json={}).status_code == 200
    return exporter.token


def test_a_second_agent_is_refused_while_the_first_is_live_and_fences_it_after(
    ctl: ControllerHandle, clock: FakeClock
) -> None:
    exporter = ctl.admin.create_exporter("bench-1", {"board": "rpi4"})
    alice = ctl.admin.create_client("alice")
    with agent(ctl, exporter.token, "a" * 32) as first, agent(ctl, exporter.token, "b" * 32) as b:
        assert first.post("/v1/exporter/register", json={}).status_code == 200
        assert first.post("/v1/exporter/heartbeat", json={}).status_code == 200
        refused = b.post("/v1/exporter/register", json={})
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"] == "agent_conflict"
        assert "another agent" in refused.json()["message"]
        # The second agent cannot heartbeat, poll leases or say the first is offline either.
        for answer in (
            b.post("/v1/exporter/heartbeat", json={}),
            b.post("/v1/exporter/heartbeat", json={"status": "offline"}),
            b.get("/v1/exporter/leases"),
        ):
            assert answer.status_code == 409, answer.text
        with ctl.http(alice.token) as http:
            listed = http.get("/v1/exporters").json()["exporters"][0]
        assert listed["status"] == "available" and listed["agents_refused"] == 1
        assert listed["agent"] == "a" * 32
        # Once the first has been silent for the heartbeat time-out, the second takes over
        # and the first is fenced.
        clock.advance(6)
        assert b.post("/v1/exporter/register", json={}).status_code == 200
        fenced = first.post("/v1/exporter/heartbeat", json={})
        assert fenced.status_code == 409 and fenced.json()["error"] == "agent_fenced"
        assert b.post("/v1/exporter/heartbeat", json={}).status_code == 200


def test_a_request_whose_client_stopped_polling_lapses(
    ctl: ControllerHandle, clock: FakeClock
) -> None:
    online(ctl, "bench-1", {"board": "rpi4"})
    holder = ctl.admin.create_client("holder")
    gone = ctl.admin.create_client("gone")
    with ctl.http(holder.token) as http:
        held = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": "2h"}).json()
        assert held["state"] == "ready"
    with ctl.http(gone.token) as http:
        waiting = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60}).json()
        assert waiting["state"] == "pending"
        clock.advance(200)
        ctl.upkeep_now()
        # Polled at 200 s: still wanted at 400 s.
        assert http.get(f"/v1/leases/{waiting['id']}").json()["state"] == "pending"
        clock.advance(200)
        ctl.upkeep_now()
        clock.advance(301)
        ctl.upkeep_now()
        after = http.get(f"/v1/leases/{waiting['id']}").json()
    assert after["state"] == "ended"
    assert "stopped polling" in after["reason"]
    with ctl.http(holder.token) as http:
        # The holder polls, so its own lease lives on (it was claimed when granted).
        assert http.get(f"/v1/leases/{held['id']}").json()["state"] == "ready"


def test_a_grant_nobody_claims_is_released_and_the_next_in_line_served(
    ctl: ControllerHandle, clock: FakeClock
) -> None:
    exporter = online(ctl, "bench-1", {"board": "rpi4"})
    first = ctl.admin.create_client("first")
    killed = ctl.admin.create_client("killed")
    third = ctl.admin.create_client("third")
    body = {"selector": "board=rpi4", "duration": "1h"}
    with (
        ctl.http(first.token) as a,
        ctl.http(killed.token) as b,
        ctl.http(third.token) as c,
        ctl.http(exporter) as e,
    ):
        held = a.post("/v1/leases", json=body).json()
        orphan = b.post("/v1/leases", json=body).json()
        later = c.post("/v1/leases", json=body).json()
        assert (orphan["state"], later["state"]) == ("pending", "pending")
        a.delete(f"/v1/leases/{held['id']}")
        # The killed client's request is granted, but nobody ever reads it.
        for _ in range(3):
            clock.advance(150)
            assert e.post("/v1/exporter/heartbeat", json={}).status_code == 200
            assert c.get(f"/v1/leases/{later['id']}").json()["state"] == "pending"
            ctl.upkeep_now()
        ended = b.get(f"/v1/leases/{orphan['id']}").json()
        assert ended["state"] == "ended" and "nobody claimed" in ended["reason"]
        assert c.get(f"/v1/leases/{later['id']}").json()["state"] == "ready"


def test_policy_changes_reach_waiting_requests_and_extensions(
    ctl: ControllerHandle, clock: FakeClock
) -> None:
    online(ctl, "bench-1", {"board": "rpi4"})
    alice = ctl.admin.create_client("alice")
    bob = ctl.admin.create_client("bob")

    def policy(name: str, clients: list[str], max_duration: str) -> object:
        return make_policy(
            name=name, clients=clients, selector="board=rpi4", priority=0, max_duration=max_duration
        )

    ctl.admin.replace_policies([policy("all", ["alice", "bob"], "2h")])
    with ctl.http(alice.token) as a, ctl.http(bob.token) as b:
        held = a.post("/v1/leases", json={"selector": "board=rpi4", "duration": "1h"}).json()
        assert held["state"] == "ready"
        waiting = b.post("/v1/leases", json={"selector": "board=rpi4", "duration": "1h"}).json()
        assert waiting["state"] == "pending"
        # Bob is no longer covered; alice may lease 1h at most now.
        ctl.admin.replace_policies([policy("alice-only", ["alice"], "1h")])
        ctl.upkeep_now()
        after = b.get(f"/v1/leases/{waiting['id']}").json()
        assert after["state"] == "ended" and "policies changed" in after["reason"]
        refused = a.post(f"/v1/leases/{held['id']}/extend", json={"duration": "30m"})
        assert refused.status_code == 422 and refused.json()["error"] == "too_long"


def test_an_exporter_ends_a_lease_it_cannot_serve_and_its_client_sees_why(
    ctl: ControllerHandle,
) -> None:
    token = online(ctl, "bench-1", {"board": "rpi4"})
    other = online(ctl, "bench-2", {"board": "x86"})
    alice = ctl.admin.create_client("alice")
    with ctl.http(alice.token) as http:
        lease = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60}).json()
    with ctl.http(other) as http:
        wrong = http.post(f"/v1/exporter/leases/{lease['id']}/end", json={"reason": "x"})
        assert wrong.status_code == 403
    with ctl.http(token) as http:
        why = "before_lease hook failed: exited with status 3"
        ended = http.post(f"/v1/exporter/leases/{lease['id']}/end", json={"reason": why})
        assert ended.status_code == 200, ended.text
    with ctl.http(alice.token) as http:
        seen = http.get(f"/v1/leases/{lease['id']}").json()
    assert seen["state"] == "ended"
    assert "bench-1" in seen["reason"] and "status 3" in seen["reason"]
