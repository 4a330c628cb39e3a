"""Real agents against a real controller: a second agent for one exporter is refused, and a
failing ``before_lease`` with ``on_failure: end_lease`` ends the lease with its reason."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from relaylab import run_agent_exporter
from tether.controller.testing import ControllerHandle, run_controller

EXPORT = """
export:
  power: {type: tether.drivers.power.MockPower}
"""


@pytest.fixture
def relayed(tmp_path: Path) -> Iterator[ControllerHandle]:
    with run_controller(tmp_path, relay=True) as ctl:
        yield ctl


def test_a_failing_before_lease_hook_ends_the_lease_and_the_client_sees_why(
    relayed: ControllerHandle,
) -> None:
    ctl = relayed
    hooks = "hooks:\n  before_lease: echo no board >&2; exit 3\n  on_failure: end_lease\n"
    config = ctl.admin.create_exporter("bench-1", {"board": "rpi4"}).config + hooks + EXPORT
    alice = ctl.admin.create_client("alice")
    with run_agent_exporter(config), ctl.http(alice.token) as http:
        lease = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60}).json()
        assert lease["state"] == "ready"
        ended = http.get(f"/v1/leases/{lease['id']}", params={"wait": 30, "state": "ready"})
        seen = ended.json()
    assert seen["state"] == "ended", seen
    assert "bench-1" in seen["reason"] and "before_lease" in seen["reason"]


def test_a_second_agent_with_the_same_token_is_refused(relayed: ControllerHandle) -> None:
    ctl = relayed
    issued = ctl.admin.create_exporter("bench-1", {"board": "rpi4"})
    alice = ctl.admin.create_client("alice")
    with run_agent_exporter(issued.config + EXPORT):
        with ctl.http(alice.token) as http:
            [listed] = http.get("/v1/exporters").json()["exporters"]
        assert listed["status"] == "available"
        assert isinstance(listed["agent"], str) and len(listed["agent"]) == 32
        # Another process with the same token (another id) is refused while the agent lives.
        with ctl.http(issued.token) as second:
            second.headers["Tether-Agent"] = "f" * 32
            refused = second.post("/v1/exporter/register", json={})
        assert refused.status_code == 409 and refused.json()["error"] == "agent_conflict"
        with ctl.http(alice.token) as http:
            [listed] = http.get("/v1/exporters").json()["exporters"]
        assert listed["agents_refused"] == 1 and listed["status"] == "available"
