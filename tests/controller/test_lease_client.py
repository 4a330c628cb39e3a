"""``tether.lease`` end to end: a real controller with its relay, a real exporter with its
agent, and the client leasing, queueing, connecting through the relay and releasing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from relaylab import AgentExporter
from tether.client import Lease, LeaseClient, load_client_settings, open_leased_tree
from tether.controller.testing import ControllerHandle, run_controller
from tether.errors import ConfigError, ControllerError


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[ControllerHandle]:
    with run_controller(tmp_path, relay=True) as ctl:
        yield ctl


def settings(ctl: ControllerHandle, name: str) -> dict[str, object]:
    client = ctl.admin.create_client(name)
    return {"controller": ctl.url, "token": client.token, "ca": ctl.ca}


def lease_state(ctl: ControllerHandle, token: object, lease_id: str) -> str:
    with ctl.http(str(token)) as http:
        return str(http.get(f"/v1/leases/{lease_id}").json()["state"])


def test_lease_yields_the_tree_through_the_relay_and_releases(
    ctl: ControllerHandle, bench: AgentExporter
) -> None:
    alice = settings(ctl, "alice")
    with tether.lease("board=rpi4", "1m", **alice) as dut:  # type: ignore[arg-type]
        dut.power.on()
        assert dut.power.status() is True
        lease = dut.session.lease  # type: ignore[attr-defined]
        assert lease.state == "ready" and lease.exporters == ("bench-1",)
        assert lease_state(ctl, alice["token"], lease.id) == "ready"
    assert lease_state(ctl, alice["token"], lease.id) == "ended"


def test_ctrl_c_inside_the_block_still_releases(
    ctl: ControllerHandle, bench: AgentExporter
) -> None:
    alice = settings(ctl, "alice")
    seen: list[str] = []
    with (
        pytest.raises(KeyboardInterrupt),
        tether.lease("board=rpi4", "1m", **alice) as dut,  # type: ignore[arg-type]
    ):
        seen.append(dut.session.lease.id)  # type: ignore[attr-defined]
        raise KeyboardInterrupt
    assert lease_state(ctl, alice["token"], seen[0]) == "ended"


def test_a_second_client_waits_in_the_queue_then_gets_the_exporter(
    ctl: ControllerHandle, bench: AgentExporter
) -> None:
    alice, bob = settings(ctl, "alice"), settings(ctl, "bob")
    queued = threading.Event()
    positions: list[int | None] = []
    results: list[object] = []

    def on_wait(pending: Lease) -> None:
        positions.append(pending.position)
        queued.set()

    def bob_leases() -> None:
        try:
            with tether.lease("board=rpi4", "1m", on_wait=on_wait, **bob) as dut:  # type: ignore[arg-type]
                results.append(dut.power.status())
        except Exception as exc:
            results.append(exc)

    with tether.lease("board=rpi4", "1m", **alice) as dut:  # type: ignore[arg-type]
        dut.power.on()
        thread = threading.Thread(target=bob_leases)
        thread.start()
        assert queued.wait(30)
    thread.join(30)
    assert positions[0] == 1
    assert results == [False]  # bob got a fresh tree: alice's power-on is gone


def test_an_unsatisfiable_selector_fails_at_once(
    ctl: ControllerHandle, bench: AgentExporter
) -> None:
    alice = settings(ctl, "alice")
    with (
        pytest.raises(ControllerError, match="unsatisfiable") as info,
        tether.lease("board=nosuch", "1m", **alice),  # type: ignore[arg-type]
    ):
        pass
    assert info.value.code == "unsatisfiable"


def test_lease_client_lists_extends_and_releases(
    ctl: ControllerHandle, bench: AgentExporter
) -> None:
    alice = settings(ctl, "alice")
    with LeaseClient(load_client_settings(**alice)) as api:  # type: ignore[arg-type]
        lease = api.wait_ready(api.request("board=rpi4", 60))
        assert [each.id for each in api.leases()] == [lease.id]
        extended = api.extend(lease.id, "10m")
        assert extended.ends_at is not None and extended.ends_at > str(lease.ends_at)
        assert [e["status"] for e in api.exporters("board=rpi4")] == ["leased"]
        assert api.release(lease.id).state == "ended"
        assert api.leases() == []


def test_settings_come_from_args_env_then_the_client_file(
    ctl: ControllerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued = ctl.admin.create_client("carol")
    config = tmp_path / "client.yaml"
    config.write_text(issued.config)
    for name in ("TETHER_CONTROLLER", "TETHER_TOKEN", "TETHER_CA", "TETHER_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    from_file = load_client_settings(config=config)
    assert (from_file.endpoint, from_file.token, from_file.ca) == (ctl.url, issued.token, ctl.ca)
    monkeypatch.setenv("TETHER_CONFIG", str(config))
    monkeypatch.setenv("TETHER_TOKEN", "tth_from_env")
    assert load_client_settings().token == "tth_from_env"
    assert load_client_settings(token="tth_arg").token == "tth_arg"
    monkeypatch.delenv("TETHER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.config/tether/client.yaml there
    with pytest.raises(ConfigError, match="no controller URL for the controller"):
        load_client_settings()
    config.write_text("endpoint: https://x\ntokn: abc\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['tokn'\]"):
        load_client_settings(config=config)


def test_the_client_dials_again_while_the_exporter_is_not_there_yet(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter dials only after its before_lease hook: until then the router answers
    exporter_unavailable, and the client dials again (no pause: the router waited)."""
    from relaylab import RelayLab
    from tether.client import _lease
    from tether.client._lease import LeasedSession
    from tether.client._lease_api import ClientSettings
    from tether.drivers.power import MockPower
    from tether.errors import RelayRefused

    refused = threading.Event()
    dial = _lease.dial_relay

    def counting_dial(*args: object, **kwargs: object) -> object:
        try:
            return dial(*args, **kwargs)  # type: ignore[arg-type]
        except RelayRefused:
            refused.set()
            raise

    monkeypatch.setattr(_lease, "dial_relay", counting_dial)
    with RelayLab(tmp_path, pair_timeout=0.2) as lab:
        lab.add_lease("L1", None)
        lease = Lease(id="L1", state="ready", relay=lab.url)
        settings = ClientSettings("https://127.0.0.1:1", "client-token", tmp_path / "ca.pem")
        sessions: list[object] = []
        thread = threading.Thread(
            target=lambda: sessions.append(
                LeasedSession(lease, settings, keepalive=None, timeout=5, exporter_timeout=30)
            )
        )
        thread.start()
        assert refused.wait(10)  # the exporter is still "running its hook"
        lab.exporter_thread.run(lab.start_exporter("L1", lab.leases["L1"], MockPower(), lab.url))
        thread.join(10)
        [session] = sessions
        assert session.call(session.server_meta["report"][0]["uuid"], "status", [], {}) is False  # type: ignore[attr-defined]
        session.close()  # type: ignore[attr-defined]


def test_open_leased_tree_gives_a_local_url_into_the_lease_session(
    ctl: ControllerHandle, bench: AgentExporter
) -> None:
    """What `tether shell --selector` needs: `dut` connects to tree.session_url."""
    alice = settings(ctl, "alice")
    with open_leased_tree("board=rpi4", duration="1m", **alice) as tree:  # type: ignore[arg-type]
        url = tree.session_url
        assert url.startswith("unix://") and "?session=" in url
        with tether.connect(url) as inside:  # as `dut power on` in the shell would
            inside.power.on()
        assert tree.power.status() is True  # the same session
        path = url.removeprefix("unix://").split("?")[0]
    assert not Path(path).exists()
