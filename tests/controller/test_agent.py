"""The exporter's controller agent against a real controller (TLS, SQLite, relay): it registers
outbound, serves each lease with a fresh session through the relay, and closes the session
when the lease ends."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from relaylab import run_agent_exporter
from tether.client import dial_relay
from tether.controller.testing import ControllerHandle, FakeClock, run_controller
from tether.driver import ClientPolicy, build_client_tree
from tether.errors import AuthenticationFailed, ConnectionLost, RelayRefused
from tether.exporter import client_ssl_context
from tether.wire import ClientConnection

EXPORT = """
export:
  power: {type: tether.drivers.power.MockPower}
"""


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[ControllerHandle]:
    with run_controller(tmp_path, relay=True) as ctl:
        yield ctl


def exporter_config(ctl: ControllerHandle, name: str = "bench-1", extra: str = "") -> str:
    issued = ctl.admin.create_exporter(name, labels={"board": "rpi4"})
    return issued.config + extra + EXPORT


def take_lease(ctl: ControllerHandle, token: str) -> dict[str, object]:
    with ctl.http(token) as http:
        lease = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60}).json()
        while lease["state"] == "pending":
            lease = http.get(f"/v1/leases/{lease['id']}?wait=30&state=pending").json()
    assert lease["state"] == "ready", lease
    return dict(lease)


def connect_through_relay(ctl: ControllerHandle, lease: dict[str, object], token: str) -> object:
    assert ctl.ca is not None
    sock, reply = dial_relay(
        str(lease["relay"]), str(lease["id"]), token, ssl_context=client_ssl_context(ctl.ca)
    )
    assert reply.info.get("exporter") in (None, "exporter", "bench-1")
    connection = ClientConnection(sock, keepalive=None)
    return build_client_tree(connection.server_meta["report"], connection, ClientPolicy())


def test_the_agent_registers_and_reports_available(ctl: ControllerHandle) -> None:
    alice = ctl.admin.create_client("alice")
    with run_agent_exporter(exporter_config(ctl)) as running:
        assert running.agent.status == "available"
        with ctl.http(alice.token) as http:
            exporters = http.get("/v1/exporters").json()["exporters"]
        assert [(e["name"], e["status"]) for e in exporters] == [("bench-1", "available")]
        assert exporters[0]["labels"]["board"] == "rpi4"


def test_a_stopping_agent_goes_offline_at_once(ctl: ControllerHandle) -> None:
    alice = ctl.admin.create_client("alice")
    config = exporter_config(ctl)
    with run_agent_exporter(config):
        pass
    with ctl.http(alice.token) as http:
        # Offline now, not after the 30 s heartbeat time-out: a request waits in the queue.
        [exporter] = http.get("/v1/exporters").json()["exporters"]
        assert exporter["status"] == "offline"
        lease = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60}).json()
        assert lease["state"] == "pending"
    with run_agent_exporter(config):  # back: the queued request is served
        with ctl.http(alice.token) as http:
            lease = http.get(f"/v1/leases/{lease['id']}?wait=30&state=pending").json()
        assert lease["state"] == "ready"


def test_a_lease_gets_a_fresh_session_reached_through_the_relay(ctl: ControllerHandle) -> None:
    alice = ctl.admin.create_client("alice")
    with run_agent_exporter(exporter_config(ctl)) as running:
        lease = take_lease(ctl, alice.token)
        dut = connect_through_relay(ctl, lease, alice.token)
        dut.power.on()  # type: ignore[attr-defined]
        assert dut.power.status() is True  # type: ignore[attr-defined]
        session = running.session_of(str(lease["id"]))
        assert session.lease_id == lease["id"]

        # Another client's token is refused by the relay, even for a live lease.
        bob = ctl.admin.create_client("bob")
        with pytest.raises(RelayRefused, match="may not use lease"):
            connect_through_relay(ctl, lease, bob.token)

        # Releasing the lease cuts the connection and closes the session.
        with ctl.http(alice.token) as http:
            assert http.delete(f"/v1/leases/{lease['id']}").json()["state"] == "ended"
        running.wait_session_closed(session)
        with pytest.raises(ConnectionLost):
            dut.power.status()  # type: ignore[attr-defined]

        # The next lease gets a new tree: the power is off again.
        second = take_lease(ctl, alice.token)
        assert second["id"] != lease["id"]
        assert connect_through_relay(ctl, second, alice.token).power.status() is False  # type: ignore[attr-defined]


def test_hooks_run_around_each_lease(ctl: ControllerHandle, tmp_path: Path) -> None:
    log = tmp_path / "hooks.log"
    hooks = f"hooks:\n  before_lease: echo before >> {log}\n  after_lease: echo after >> {log}\n"
    alice = ctl.admin.create_client("alice")
    with run_agent_exporter(exporter_config(ctl, extra=hooks)) as running:
        lease = take_lease(ctl, alice.token)
        dut = connect_through_relay(ctl, lease, alice.token)
        assert dut.power.status() is False  # type: ignore[attr-defined]
        assert log.read_text() == "before\n"
        session = running.session_of(str(lease["id"]))
        with ctl.http(alice.token) as http:
            http.delete(f"/v1/leases/{lease['id']}")
        running.wait_session_closed(session)
        assert log.read_text() == "before\nafter\n"


def test_an_unknown_exporter_token_stops_the_agent(ctl: ControllerHandle) -> None:
    config = exporter_config(ctl).replace("token: tth_", "token: tth_x")
    with pytest.raises(AuthenticationFailed), run_agent_exporter(config):
        pass


def test_an_expired_lease_is_cut_and_its_session_closed(tmp_path: Path) -> None:
    clock = FakeClock()
    with run_controller(tmp_path, relay=True, clock=clock) as ctl:
        alice = ctl.admin.create_client("alice")
        with run_agent_exporter(exporter_config(ctl)) as running:
            lease = take_lease(ctl, alice.token)
            dut = connect_through_relay(ctl, lease, alice.token)
            assert dut.power.status() is False  # type: ignore[attr-defined]
            session = running.session_of(str(lease["id"]))
            clock.advance(61)  # the lease was for 60 s
            ctl.poke()
            running.wait_session_closed(session)
            with pytest.raises(ConnectionLost):
                dut.power.status()  # type: ignore[attr-defined]
            with ctl.http(alice.token) as http:
                assert http.get(f"/v1/leases/{lease['id']}").json()["state"] == "expired"


def test_the_agent_reports_hook_while_before_lease_runs(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    started, go = tmp_path / "started", tmp_path / "go"
    os.mkfifo(started)
    os.mkfifo(go)
    hooks = f"hooks:\n  before_lease: echo started > {started}; cat {go} > /dev/null\n"
    alice = ctl.admin.create_client("alice")
    with run_agent_exporter(exporter_config(ctl, extra=hooks)) as running:

        async def status() -> str:
            return running.agent.status

        with ctl.http(alice.token) as http:
            lease = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60})
        with started.open() as fifo:  # blocks until the hook runs
            assert fifo.read() == "started\n"
        assert running.run(status()) == "hook"
        with go.open("w") as fifo:
            fifo.write("go\n")
        dut = connect_through_relay(ctl, lease.json(), alice.token)  # waits for the dial
        assert dut.power.status() is False  # type: ignore[attr-defined]
        assert running.run(status()) == "leased"
