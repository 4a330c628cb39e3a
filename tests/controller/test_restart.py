"""A real `tether controller serve` subprocess on a SQLite file, restarted mid-lease."""

from __future__ import annotations

from pathlib import Path

from tether.controller.testing import run_controller


def test_leases_queue_and_identities_survive_a_restart(tmp_path: Path) -> None:
    with run_controller(
        tmp_path, subprocess=True, heartbeat_interval=1, heartbeat_timeout=120
    ) as ctl:
        alice = ctl.admin.create_client("alice")
        bob = ctl.admin.create_client("bob")
        exporter = ctl.admin.create_exporter("e1", {"board": "rpi4"})
        with ctl.http(exporter.token) as e1:
            assert e1.post("/v1/exporter/register", json={}).status_code == 200
        with ctl.http(alice.token) as a, ctl.http(bob.token) as b:
            held = a.post("/v1/leases", json={"selector": "board=rpi4", "duration": "1h"}).json()
            queued = b.post("/v1/leases", json={"exporter": "e1", "duration": "1h"}).json()
        assert (held["state"], queued["state"], queued["position"]) == ("ready", "pending", 1)
        before = ctl.url

        ctl.restart()
        assert ctl.url == before

        with ctl.http(alice.token) as a, ctl.http(bob.token) as b:
            # Same tokens, same leases, same queue.
            again = a.get(f"/v1/leases/{held['id']}").json()
            assert (again["state"], again["exporters"], again["ends_at"]) == (
                "ready",
                ["e1"],
                held["ends_at"],
            )
            assert b.get(f"/v1/leases/{queued['id']}").json()["position"] == 1
            a.delete(f"/v1/leases/{held['id']}")
            granted = b.get(
                f"/v1/leases/{queued['id']}", params={"wait": 30, "state": "pending"}
            ).json()
            assert (granted["state"], granted["exporters"]) == ("ready", ["e1"])
        with ctl.http(exporter.token) as e1:
            leases = e1.post("/v1/exporter/heartbeat", json={}).json()["leases"]
            assert [item["id"] for item in leases] == [queued["id"]]


def test_a_killed_controller_loses_nothing_committed(tmp_path: Path) -> None:
    with run_controller(tmp_path, subprocess=True, tls=False) as ctl:
        carol = ctl.admin.create_client("carol")
        with ctl.http(ctl.admin.create_exporter("e1", {}).token) as e1:
            e1.post("/v1/exporter/register", json={})
        with ctl.http(carol.token) as c:
            got = c.post("/v1/leases", json={"exporter": "e1", "duration": "1h"}).json()
        ctl.kill()  # type: ignore[attr-defined]
        ctl.restart()
        with ctl.http(carol.token) as c:
            assert c.get(f"/v1/leases/{got['id']}").json()["state"] == "ready"
