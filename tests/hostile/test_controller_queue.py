"""The queue cannot be abused: a cap on one client's waiting requests, positions in one query,
listings off the event loop, heartbeats answered meanwhile."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.controller import Limits
from tether.controller.testing import ControllerHandle, run_controller


@pytest.fixture
def busy(tmp_path: Path) -> Iterator[tuple[ControllerHandle, str, str]]:
    """A controller with one exporter, already leased by ``holder``; ``(ctl, exporter token,
    hog token)``."""
    limits = Limits(max_pending_per_client=400)
    with run_controller(tmp_path, limits=limits) as ctl:
        exporter = ctl.admin.create_exporter("bench-1", {"board": "rpi4"})
        holder = ctl.admin.create_client("holder")
        hog = ctl.admin.create_client("hog")
        with ctl.http(exporter.token) as http:
            assert http.post("/v1/exporter/register", json={}).status_code == 200
        with ctl.http(holder.token) as http:
            answer = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": "1h"})
            assert answer.json()["state"] == "ready"
        yield ctl, exporter.token, hog.token


def test_one_client_may_queue_only_so_many_requests(
    busy: tuple[ControllerHandle, str, str],
) -> None:
    ctl, _exporter, hog = busy
    with ctl.http(hog) as http:
        body = {"selector": "board=rpi4", "duration": 60}
        states = [http.post("/v1/leases", json=body).json().get("state") for _ in range(400)]
        assert states == ["pending"] * 400
        refused = http.post("/v1/leases", json=body)
        assert refused.status_code == 429
        assert refused.json()["error"] == "too_many_pending"
        assert "400" in refused.json()["message"]
        # Positions are right (one query for all of them).
        listed = http.get("/v1/leases").json()["leases"]
        assert [lease["position"] for lease in listed] == list(range(1, 401))
    other = ctl.admin.create_client("other")
    with ctl.http(other.token) as http:
        answer = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60})
        assert answer.status_code == 201 and answer.json()["position"] == 401


def test_heartbeats_are_answered_while_listings_hammer_the_controller(
    busy: tuple[ControllerHandle, str, str],
) -> None:
    ctl, exporter, hog = busy
    with ctl.http(hog) as http:
        for _ in range(300):
            http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60})
    stop = threading.Event()
    errors: list[str] = []

    def hammer() -> None:
        with ctl.http(hog) as http:
            for _ in range(20):
                if stop.is_set():
                    return
                answer = http.get("/v1/leases")
                if answer.status_code != 200:
                    errors.append(answer.text)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        with ctl.http(exporter) as http:
            for _ in range(20):
                answer = http.post("/v1/exporter/heartbeat", json={"status": "available"})
                assert answer.status_code == 200, answer.text
                assert len(answer.json()["leases"]) == 1
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not errors
    with ctl.http(hog) as http:
        status = http.get("/v1/exporters").json()["exporters"][0]["status"]
    assert status == "leased"
