"""Leases with roles end to end: a real controller and relay, two real agent exporters, one
lease for both, each role's tree spliced to its own exporter; the CLI and the shell's ``dut
--role``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import tether
from relaylab import run_agent_exporter
from tether.cli import main
from tether.client import Lab, LeaseClient, dial_relay, load_client_settings, parse_roles
from tether.controller.testing import ControllerHandle, run_controller
from tether.errors import ConfigError, RelayRefused
from tether.wire import relay_url_for

BIN = Path(sys.executable).parent
EXPORT = """
export:
  power: {type: tether.drivers.power.MockPower}
"""
HOST_EXPORT = """
export:
  net: {type: tether.drivers.power.MockPower}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerHandle]:
    tmp = tmp_path_factory.mktemp("roles")
    with run_controller(tmp, relay=True) as ctl:
        board = ctl.admin.create_exporter("board-1", labels={"board": "rpi4"})
        host = ctl.admin.create_exporter("host-1", labels={"kind": "x86"})
        with (
            run_agent_exporter(board.config + EXPORT),
            run_agent_exporter(host.config + HOST_EXPORT),
        ):
            yield ctl


def client(ctl: ControllerHandle, name: str) -> dict[str, object]:
    issued = ctl.admin.create_client(name)
    return {"controller": ctl.url, "token": issued.token, "ca": ctl.ca}


def lease_state(ctl: ControllerHandle, token: object, lease_id: str) -> str:
    with ctl.http(str(token)) as http:
        return str(http.get(f"/v1/leases/{lease_id}").json()["state"])


def test_one_lease_one_tree_per_role(lab: ControllerHandle) -> None:
    alice = client(lab, "alice")
    roles = {"dut": "board=rpi4", "host": "kind=x86"}
    with tether.lease(roles=roles, duration="1m", **alice) as got:  # type: ignore[arg-type]
        assert isinstance(got, Lab)
        assert got.exporters == {"dut": "board-1", "host": "host-1"}
        assert got.lease.exporters == ("board-1", "host-1")
        # each role reaches its own exporter: the trees differ in shape
        assert set(got.dut.children) == {"power"} and set(got.host.children) == {"net"}
        got.dut.power.on()
        got["host"].net.off()
        assert got.dut.power.status() is True and got.host.net.status() is False
        with pytest.raises(AttributeError, match="roles: dut, host"):
            _ = got.nosuch
        lease_id = got.lease.id
        assert lease_state(lab, alice["token"], lease_id) == "ready"
        # the router pairs each named dial with that exporter, whichever dial idles first
        settings = load_client_settings(**alice)  # type: ignore[arg-type]
        relay = relay_url_for(str(got.lease.relay), settings.endpoint)
        for wanted in ("host-1", "board-1", "host-1", "board-1", "host-1"):
            sock, reply = dial_relay(
                relay, lease_id, settings.token, ssl_context=settings.ssl_context(), exporter=wanted
            )
            sock.close()
            assert reply.info["exporter"] == wanted
    assert lease_state(lab, alice["token"], lease_id) == "ended"


def test_a_relay_dial_naming_an_exporter_outside_the_lease_is_refused(
    lab: ControllerHandle,
) -> None:
    dave = client(lab, "dave")
    settings = load_client_settings(**dave)  # type: ignore[arg-type]
    with LeaseClient(settings) as api:
        granted = api.wait_ready(api.request(None, "1m", selectors=["board=rpi4"]))
        try:
            assert granted.relay is not None
            relay = relay_url_for(granted.relay, settings.endpoint)
            context = settings.ssl_context()
            with pytest.raises(RelayRefused, match="'host-1' not one of its exporters") as info:
                dial_relay(
                    relay, granted.id, settings.token, ssl_context=context, exporter="host-1"
                )
            assert info.value.code == "forbidden"
            sock, reply = dial_relay(
                relay, granted.id, settings.token, ssl_context=context, exporter="board-1"
            )
            sock.close()
            assert reply.info["exporter"] == "board-1"
        finally:
            api.release(granted.id)


def test_roles_are_validated() -> None:
    assert parse_roles(["dut=board=rpi4,site=a"]) == {"dut": "board=rpi4,site=a"}
    for bad, message in (
        (["dut"], "NAME=SELECTOR"),
        (["dut=a", "dut=b"], "twice"),
        (["1x=a"], "identifier"),
        (["lease=a"], "reserved"),
        (["Dut=a", "dut=b"], "only in case"),
        (["dut="], "empty selector"),
    ):
        with pytest.raises(ConfigError, match=message):
            parse_roles(bad)
    with pytest.raises(ConfigError, match="not both"), tether.lease("a=b", roles={"x": "y"}):
        pass


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["PATH"] = "/usr/bin:/bin"
    env.update(extra)
    return env


def tether_in_process(args: list[str], env: dict[str, str]) -> Result:
    """``tether ARGS`` through click's runner, with ``env``'s ``TETHER_`` variables as the
    only ones set (where the test is about the command, not the process)."""
    tether_env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TETHER_")}
    tether_env.update((k, v) for k, v in env.items() if k.startswith("TETHER_"))
    return CliRunner().invoke(main, args, env=tether_env)


def test_shell_with_roles_and_dut_role(lab: ControllerHandle) -> None:
    bob = client(lab, "bob")
    env = clean_env(
        TETHER_CONTROLLER=str(bob["controller"]),
        TETHER_TOKEN=str(bob["token"]),
        TETHER_CA=str(bob["ca"]),
    )
    script = (
        "dut --role dut power on && dut --role dut power status && "
        "dut --role=host net status && dut power status && "
        'echo "$TETHER_ROLES" && dut --role nosuch power status; echo "status $?"'
    )
    result = subprocess.run(
        [str(BIN / "tether"), "shell", "--role", "dut=board=rpi4", "--role", "host=kind=x86",
         "--duration", "1m", "--", "sh", "-c", script],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["true", "false", "true", "dut,host", "status 2"]
    assert "no role 'nosuch'" in result.stderr and "dut, host" in result.stderr
    assert "dut=board-1" in result.stderr and "host=host-1" in result.stderr


def test_lease_acquire_with_roles(lab: ControllerHandle) -> None:
    carol = client(lab, "carol")
    env = clean_env(
        TETHER_CONTROLLER=str(carol["controller"]),
        TETHER_TOKEN=str(carol["token"]),
        TETHER_CA=str(carol["ca"]),
    )
    result = tether_in_process(
        ["lease", "acquire", "--role", "dut=board=rpi4", "--role", "host=kind=x86", "-d", "1m"],
        env,
    )
    assert result.exit_code == 0, result.stderr
    assert "board-1, host-1" in result.stdout
    assert "dut: board-1" in result.stdout and "host: host-1" in result.stdout
    with LeaseClient(load_client_settings(**carol)) as api:  # type: ignore[arg-type]
        (held,) = api.leases()
        assert held.exporters == ("board-1", "host-1")
        api.release(held.id)
    usage = tether_in_process(["lease", "acquire", "--role", "dut=a", "--selector", "b=c"], env)
    assert usage.exit_code == 2 and "exactly one of" in usage.stderr
