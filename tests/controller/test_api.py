"""The HTTP API over real TLS on loopback: leases, the queue, exporters, errors."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from labkit import lease, online

from tether.controller import make_policy
from tether.controller.testing import ControllerHandle, FakeClock


def test_openapi_lists_the_lease_and_exporter_endpoints(ctl: ControllerHandle) -> None:
    with ctl.http() as http:
        spec = http.get("/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    paths = spec["paths"]
    assert set(paths["/v1/leases"]) == {"get", "post"}
    assert set(paths["/v1/leases/{lease_id}"]) == {"get", "delete"}
    assert "post" in paths["/v1/leases/{lease_id}/extend"]
    for path in ("/v1/exporter/register", "/v1/exporter/heartbeat", "/v1/exporter/leases"):
        assert path in paths
    assert "LeaseRequest" in spec["components"]["schemas"]


def test_lease_is_granted_at_once_when_an_exporter_is_free(
    ctl: ControllerHandle, alice: httpx.Client
) -> None:
    online(ctl, "e1", {"board": "rpi4"})
    got = lease(alice, selector="board=rpi4", duration="30m")
    assert got["state"] == "ready"
    assert got["exporters"] == ["e1"]
    assert got["duration"] == 1800
    assert got["position"] is None
    listed = alice.get("/v1/leases").json()["leases"]
    assert [item["id"] for item in listed] == [got["id"]]


def test_waiting_clients_see_their_position_and_get_the_exporter_in_order(
    ctl: ControllerHandle, alice: httpx.Client, bob: httpx.Client
) -> None:
    online(ctl, "e1", {"board": "rpi4"})
    first = lease(alice, selector="board=rpi4")
    second = lease(bob, selector="board=rpi4")
    third = lease(alice, selector="board=rpi4")
    assert (second["state"], second["position"]) == ("pending", 1)
    assert (third["state"], third["position"]) == ("pending", 2)

    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            bob.get, f"/v1/leases/{second['id']}", params={"wait": 30, "state": "pending"}
        )
        assert alice.delete(f"/v1/leases/{first['id']}").json()["state"] == "ended"
        granted = waiting.result().json()
    assert (granted["state"], granted["exporters"]) == ("ready", ["e1"])
    assert alice.get(f"/v1/leases/{third['id']}").json()["position"] == 1


def test_a_pending_lease_can_be_released_and_leaves_the_queue(
    ctl: ControllerHandle, alice: httpx.Client, bob: httpx.Client
) -> None:
    online(ctl, "e1", {"board": "rpi4"})
    lease(alice, exporter="e1")
    queued = lease(bob, exporter="e1")
    behind = lease(bob, exporter="e1")
    assert bob.delete(f"/v1/leases/{queued['id']}").json()["state"] == "ended"
    assert bob.get(f"/v1/leases/{behind['id']}").json()["position"] == 1
    # Releasing twice is harmless and says what the lease is.
    assert bob.delete(f"/v1/leases/{queued['id']}").json()["state"] == "ended"


def test_several_exporters_are_granted_together_or_not_at_all(
    ctl: ControllerHandle, alice: httpx.Client, bob: httpx.Client
) -> None:
    online(ctl, "a1", {"board": "rpi4"})
    online(ctl, "a2", {"board": "rpi4"})
    online(ctl, "b1", {"board": "bbb"})
    hold = lease(bob, exporter="a2")
    pair = lease(alice, selector="board=rpi4", count=2)
    assert pair["state"] == "pending"
    assert alice.get("/v1/exporters").json()["exporters"][0]["status"] == "available"
    mixed = lease(bob, selectors=["board=bbb", "board=rpi4"])
    # a1 is free but reserved for alice's earlier request: bob's later one must not take it.
    assert mixed["state"] == "pending"
    bob.delete(f"/v1/leases/{hold['id']}")
    done = alice.get(f"/v1/leases/{pair['id']}").json()
    assert done["state"] == "ready"
    assert sorted(done["exporters"]) == ["a1", "a2"]
    assert bob.get(f"/v1/leases/{mixed['id']}").json()["state"] == "pending"


def test_unsatisfiable_requests_are_said_at_once(
    ctl: ControllerHandle, alice: httpx.Client
) -> None:
    online(ctl, "e1", {"board": "rpi4"})
    none = lease(alice, selector="board=nope")
    assert none["state"] == "unsatisfiable"
    assert "no exporter matches selector 'board=nope'" in none["reason"]
    too_many = lease(alice, selector="board=rpi4", count=2)
    assert too_many["state"] == "unsatisfiable"
    assert "2 distinct exporters" in too_many["reason"]
    ghost = alice.post("/v1/leases", json={"exporter": "ghost", "duration": 60})
    assert (ghost.status_code, ghost.json()["error"]) == (404, "not_found")
    assert ghost.json()["message"] == "no exporter named 'ghost'"


def test_offline_exporter_is_never_granted_and_comes_back(
    ctl: ControllerHandle, clock: FakeClock, alice: httpx.Client
) -> None:
    exporter = online(ctl, "e1", {"board": "rpi4"})
    clock.advance(6)  # past the 5 s heartbeat timeout
    statuses = alice.get("/v1/exporters").json()["exporters"]
    assert [(e["name"], e["status"]) for e in statuses] == [("e1", "offline")]
    waiting = lease(alice, selector="board=rpi4")
    assert waiting["state"] == "pending"

    assert exporter.post("/v1/exporter/heartbeat", json={}).status_code == 200
    ctl.poke()  # write the heartbeat now instead of at the next flush
    granted = alice.get(
        f"/v1/leases/{waiting['id']}", params={"wait": 30, "state": "pending"}
    ).json()
    assert (granted["state"], granted["exporters"]) == ("ready", ["e1"])


def test_exporter_in_a_hook_is_not_granted_until_available(
    ctl: ControllerHandle, alice: httpx.Client
) -> None:
    exporter = online(ctl, "e1", {"board": "rpi4"})
    exporter.post("/v1/exporter/heartbeat", json={"status": "hook"})
    assert alice.get("/v1/exporters").json()["exporters"][0]["status"] == "hook"
    waiting = lease(alice, exporter="e1")
    assert waiting["state"] == "pending"
    beat = exporter.post("/v1/exporter/heartbeat", json={"status": "available"}).json()
    assert [item["id"] for item in beat["leases"]] == [waiting["id"]]


def test_exporter_learns_its_leases_by_long_poll(
    ctl: ControllerHandle, alice: httpx.Client
) -> None:
    exporter = online(ctl, "e1", {"board": "rpi4"})
    first = exporter.get("/v1/exporter/leases").json()
    assert first["leases"] == []
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            exporter.get, "/v1/exporter/leases", params={"wait": 30, "version": first["version"]}
        )
        got = lease(alice, selector="board=rpi4")
        news = waiting.result().json()
    assert [(item["id"], item["client"]) for item in news["leases"]] == [(got["id"], "alice")]
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(
            exporter.get, "/v1/exporter/leases", params={"wait": 30, "version": news["version"]}
        )
        alice.delete(f"/v1/leases/{got['id']}")
        assert waiting.result().json()["leases"] == []


def test_expired_lease_ends_and_everyone_learns_it(
    ctl: ControllerHandle, clock: FakeClock, alice: httpx.Client, bob: httpx.Client
) -> None:
    exporter = online(ctl, "e1", {"board": "rpi4"})
    got = lease(alice, exporter="e1", duration=60)
    queued = lease(bob, exporter="e1", duration=60)
    clock.advance(61)
    exporter.post("/v1/exporter/heartbeat", json={})  # still online in the new time
    ctl.poke()
    ended = alice.get(f"/v1/leases/{got['id']}", params={"wait": 30, "state": "ready"}).json()
    assert ended["state"] == "expired"
    assert ended["reason"].startswith("expired at its end time")
    assert bob.get(f"/v1/leases/{queued['id']}").json()["state"] == "ready"
    beat = exporter.get("/v1/exporter/leases").json()
    assert [item["id"] for item in beat["leases"]] == [queued["id"]]
    refused = alice.post(f"/v1/leases/{got['id']}/extend", json={"duration": 60})
    assert refused.status_code == 409
    assert refused.json()["error"] == "lease_not_live"
    assert refused.json()["state"] == "expired"


def test_real_time_expiry_wakes_the_long_poll(tmp_path: Any) -> None:
    from tether.controller.testing import run_controller

    with run_controller(tmp_path, tls=False) as ctl:
        online(ctl, "e1", {})
        with ctl.http(ctl.admin.create_client("c").token) as http:
            got = lease(http, exporter="e1", duration=1)
            ended = http.get(
                f"/v1/leases/{got['id']}", params={"wait": 30, "state": "ready"}
            ).json()
    assert ended["state"] == "expired"


def test_extend_moves_the_end_within_the_policy_maximum(
    ctl: ControllerHandle, alice: httpx.Client
) -> None:
    ctl.admin.set_policy(
        make_policy(name="all", clients="*", selector="", priority=0, max_duration="1h")
    )
    online(ctl, "e1", {})
    got = lease(alice, exporter="e1", duration="30m")
    longer = alice.post(f"/v1/leases/{got['id']}/extend", json={"duration": "20m"}).json()
    assert longer["duration"] == 3000
    too_long = alice.post(f"/v1/leases/{got['id']}/extend", json={"duration": "20m"})
    assert too_long.status_code == 422
    assert too_long.json()["error"] == "too_long"
    assert too_long.json()["max_duration"] == 3600
    assert alice.post("/v1/leases", json={"exporter": "e1", "duration": "2h"}).status_code == 422


def test_policies_limit_exporters_and_order_the_queue_by_priority(
    ctl: ControllerHandle, alice: httpx.Client, bob: httpx.Client
) -> None:
    ctl.admin.set_policy(
        make_policy(name="lab", clients="*", selector="site=a", priority=0, max_duration="8h")
    )
    ctl.admin.set_policy(
        make_policy(name="ci", clients="bob", selector="site=a", priority=10, max_duration="1h")
    )
    online(ctl, "e1", {"site": "a"})
    online(ctl, "e2", {"site": "b"})
    hidden = lease(alice, exporter="e2")
    assert hidden["state"] == "unsatisfiable"
    assert "no access policy lets this client lease" in hidden["reason"]
    held = lease(alice, exporter="e1")
    low = lease(alice, exporter="e1")
    high = lease(bob, exporter="e1")
    assert (low["priority"], high["priority"]) == (0, 10)
    assert high["position"] == 1
    assert alice.get(f"/v1/leases/{low['id']}").json()["position"] == 2
    alice.delete(f"/v1/leases/{held['id']}")
    assert bob.get(f"/v1/leases/{high['id']}").json()["state"] == "ready"
    assert alice.get(f"/v1/leases/{low['id']}").json()["state"] == "pending"

    with ctl.http(ctl.admin.create_client("carol").token) as carol:
        ctl.admin.delete_policy("lab")
        refused = carol.post("/v1/leases", json={"exporter": "e1", "duration": 60})
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"selector": "board=", "duration": 60}, "bad_selector", "position 6"),
        ({"selector": "a in (x", "duration": 60}, "bad_selector", "',' or ')'"),
        ({"selector": "a=b", "duration": "soon"}, "bad_duration", "'30m'"),
        ({"selector": "a=b", "duration": -1}, "bad_duration", "positive"),
        ({"duration": 60}, "invalid_request", "exactly one of"),
        ({"selector": "a=b", "exporter": "x", "duration": 60}, "invalid_request", "exactly one"),
        ({"selector": "a=b"}, "invalid_request", "duration"),
        ({"selector": "a=b", "duration": 60, "colour": 1}, "invalid_request", "colour"),
        ({"selector": "a=b", "count": 0, "duration": 60}, "invalid_request", "count"),
    ],
)
def test_bad_lease_requests_get_a_clear_422(
    ctl: ControllerHandle, alice: httpx.Client, body: dict[str, Any], code: str, needle: str
) -> None:
    answer = alice.post("/v1/leases", json=body)
    assert answer.status_code == 422
    error = answer.json()
    assert error["error"] == code
    assert needle in error["message"]


def test_bad_tokens_and_wrong_identities_are_refused(
    ctl: ControllerHandle, alice: httpx.Client, bob: httpx.Client
) -> None:
    exporter = online(ctl, "e1", {})
    with ctl.http() as anonymous:
        missing = anonymous.get("/v1/leases")
    assert (missing.status_code, missing.json()["error"]) == (401, "unauthorized")
    assert "Authorization: Bearer" in missing.json()["message"]
    with ctl.http("tth_not-a-real-token") as stranger:
        assert stranger.get("/v1/leases").json()["error"] == "unauthorized"
    wrong_kind = exporter.post("/v1/leases", json={"exporter": "e1", "duration": 60})
    assert (wrong_kind.status_code, wrong_kind.json()["error"]) == (403, "forbidden")
    assert alice.post("/v1/exporter/heartbeat", json={}).status_code == 403
    got = lease(alice, exporter="e1")
    theirs = bob.delete(f"/v1/leases/{got['id']}")
    assert (theirs.status_code, theirs.json()["error"]) == (403, "forbidden")
    unknown = alice.get("/v1/leases/nope")
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    assert alice.get("/v1/nothing-here").json()["error"] == "not_found"
    assert alice.get("/v1/whoami").json() == {"kind": "client", "name": "alice"}
    # The controller still serves after all that.
    assert alice.get(f"/v1/leases/{got['id']}").json()["state"] == "ready"


def test_rotated_and_deleted_tokens_stop_working(ctl: ControllerHandle, clock: FakeClock) -> None:
    carol = ctl.admin.create_client("carol")
    rotated = ctl.admin.rotate("client", "carol")
    with ctl.http(rotated.token) as http:
        assert http.get("/v1/whoami").json()["name"] == "carol"
    with ctl.http(carol.token) as http:
        assert http.get("/v1/whoami").status_code == 401
    ctl.admin.delete("client", "carol")
    with ctl.http(ctl.admin.create_client("dave").token) as http:
        assert http.get("/v1/whoami").status_code == 200


def test_deleting_an_exporter_ends_its_lease(ctl: ControllerHandle, alice: httpx.Client) -> None:
    online(ctl, "e1", {"board": "x"})
    got = lease(alice, selector="board=x")
    queued = lease(alice, selector="board=x")
    ctl.admin.delete("exporter", "e1")
    ended = alice.get(f"/v1/leases/{got['id']}").json()
    assert (ended["state"], ended["reason"]) == ("ended", "exporter e1 was deleted")
    ctl.poke()
    hopeless = alice.get(
        f"/v1/leases/{queued['id']}", params={"wait": 30, "state": "pending"}
    ).json()
    assert hopeless["state"] == "unsatisfiable"


def test_authorize_relay_checks_token_role_and_lease(
    ctl: ControllerHandle, alice: httpx.Client
) -> None:
    exporter_id = ctl.admin.create_exporter("e1", {})
    ctl.http(exporter_id.token).post("/v1/exporter/register", json={})
    other = online(ctl, "e2", {})
    assert other is not None
    got = lease(alice, exporter="e1")
    alice_token = alice.headers["Authorization"].split()[1]
    controller = ctl._server.controller  # type: ignore[attr-defined]
    loop = ctl._loop  # type: ignore[attr-defined]

    def check(lease_id: str, token: str, role: str) -> bool:
        coro = controller.authorize_relay(lease_id, token, role)
        return bool(asyncio.run_coroutine_threadsafe(coro, loop).result())

    assert check(got["id"], alice_token, "client")
    assert check(got["id"], exporter_id.token, "exporter")
    assert not check(got["id"], alice_token, "exporter")
    assert not check(got["id"], exporter_id.token, "client")
    assert not check(got["id"], "tth_bogus", "client")
    assert not check("no-such-lease", alice_token, "client")
    alice.delete(f"/v1/leases/{got['id']}")
    assert not check(got["id"], alice_token, "client")


def test_leases_carry_the_relay_address_when_a_relay_runs(tmp_path: Any) -> None:
    from tether.controller.testing import run_controller

    with run_controller(tmp_path, relay=True) as ctl:
        assert ctl.relay is not None and ctl.relay.startswith("tls://127.0.0.1:")
        exporter = online(ctl, "e1", {})
        with ctl.http(ctl.admin.create_client("c").token) as http:
            got = lease(http, exporter="e1")
            queued = lease(http, exporter="e1")
        assert got["relay"] == ctl.relay
        assert queued["relay"] is None  # only a ready lease has somewhere to dial
        beat = exporter.post("/v1/exporter/heartbeat", json={}).json()
        assert [(item["id"], item["relay"]) for item in beat["leases"]] == [(got["id"], ctl.relay)]


def test_a_deleted_exporter_is_told_so_on_its_next_heartbeat(ctl: ControllerHandle) -> None:
    exporter = online(ctl, "e1", {})
    ctl.admin.delete("exporter", "e1")
    ctl.notice_admin_changes()
    refused = exporter.post("/v1/exporter/heartbeat", json={})
    assert (refused.status_code, refused.json()["error"]) == (401, "unauthorized")


def test_durations_as_text_and_selector_lists(ctl: ControllerHandle, alice: httpx.Client) -> None:
    online(ctl, "a", {"board": "rpi4", "camera": "yes"})
    online(ctl, "b", {"board": "rpi4"})
    # Only 'a' has a camera, so the rpi4 slot must get 'b' for both to be served.
    got = lease(alice, selectors=["camera", "board=rpi4"], duration="1h30m")
    assert (got["state"], got["exporters"], got["duration"]) == ("ready", ["a", "b"], 5400)
    assert got["requests"] == [
        {"selector": "camera", "exporter": None},
        {"selector": "board=rpi4", "exporter": None},
    ]
