"""Hook output in view: a lease's ``before_lease`` output reaches its client while the hook
runs, is kept with the lease (``hooks`` in the lease JSON, ``tether lease list --json``, the
dashboard's lease page), and a lease a failing hook ended says why."""

from __future__ import annotations

import json
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import tether
from relaylab import release_fifo, run_agent_exporter
from tether.cli import main
from tether.controller.testing import ControllerHandle, run_controller
from tether.errors import ControllerError

EXPORT = """
export:
  power: {type: tether.drivers.power.MockPower}
"""


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[ControllerHandle]:
    with run_controller(tmp_path, relay=True) as ctl:
        yield ctl


def hooks_config(ctl: ControllerHandle, before: str, policy: str = "warn") -> str:
    issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
    hooks = f"hooks:\n  before_lease: {json.dumps(before)}\n  on_failure: {policy}\n"
    return issued.config + hooks + EXPORT


def test_before_lease_output_is_shown_while_it_runs_and_kept_with_the_lease(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    before = f"echo flashing the board; read answer < {gate}; echo flashed $answer"
    alice = ctl.admin.create_client("alice")
    account: dict[str, Any] = {"controller": ctl.url, "token": alice.token, "ca": ctl.ca}
    seen: queue.Queue[tuple[str, str]] = queue.Queue()
    outcome: dict[str, Any] = {}

    def use_the_board() -> None:
        try:
            with tether.lease(
                "board=rpi4",
                "1m",
                on_hook=lambda run, text: seen.put((run["state"], text)),
                **account,
            ) as dut:
                outcome["status"] = dut.power.status()
                outcome["lease"] = dut.session.lease.id
        except Exception as exc:
            outcome["error"] = exc

    with run_agent_exporter(hooks_config(ctl, before), base_dir=tmp_path):
        user = threading.Thread(target=use_the_board)
        user.start()
        try:
            # The hook is blocked on its fifo: what it printed so far is already shown.
            state, text = seen.get(timeout=30)
            while "flashing the board" not in text:
                state, text = seen.get(timeout=30)
            assert state == "running"
        finally:
            release_fifo(gate, "ok\n")
            user.join(60)
        assert "error" not in outcome, outcome
        assert outcome["status"] is False

    with ctl.http(alice.token) as http:
        lease = http.get(f"/v1/leases/{outcome['lease']}").json()
    [run] = [each for each in lease["hooks"] if each["hook"] == "before_lease"]
    assert run["state"] == "ok" and run["exporter"] == "bench-1"
    assert "flashing the board" in run["output"] and "flashed ok" in run["output"]
    assert lease["hooks_version"] >= 2

    # The lease listing's --json carries them too.
    config = tmp_path / "alice.yaml"
    config.write_text(alice.config)
    runner = CliRunner(env={"TETHER_CONFIG": str(config), "TETHER_TOKEN": None})
    listed = runner.invoke(main, ["lease", "list", "--all", "--json"], catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    [mine] = [each for each in json.loads(listed.output)["leases"] if each["id"] == lease["id"]]
    assert mine["hooks"][0]["output"] == run["output"]


def test_a_lease_ended_by_a_failing_hook_says_why_everywhere(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    before = "echo the sd card is gone >&2; exit 3"
    alice = ctl.admin.create_client("alice")
    admin = ctl.admin.create_admin("root")
    account: dict[str, Any] = {"controller": ctl.url, "token": alice.token, "ca": ctl.ca}
    shown: list[str] = []
    config = hooks_config(ctl, before, "end_lease")
    with (
        run_agent_exporter(config, base_dir=tmp_path),
        pytest.raises(ControllerError) as caught,
        tether.lease("board=rpi4", "1m", on_hook=lambda run, text: shown.append(text), **account),
    ):
        pass
    message = str(caught.value)
    assert "is ended" in message and "exited with status 3" in message
    assert "the sd card is gone" in message
    with ctl.http(alice.token) as http:
        [lease] = http.get("/v1/leases", params={"all": "true"}).json()["leases"]
    assert lease["state"] == "ended"
    assert "exited with status 3" in lease["reason"]
    [run] = lease["hooks"]
    assert run["state"] == "failed" and run["status"] == 3
    assert "the sd card is gone" in run["output"]
    # The dashboard's lease page shows the hook and why the lease ended.
    with ctl.http() as http:
        page = http.post("/login", data={"token": admin.token}, follow_redirects=True)
        assert page.status_code == 200
        page = http.get(f"/leases/{lease['id']}")
    assert page.status_code == 200
    assert 'data-hook-state="failed"' in page.text
    assert "the sd card is gone" in page.text and "exited with status 3" in page.text
