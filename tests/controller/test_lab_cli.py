"""`tether queue`, `tether exporters`, `tether admin maintenance|audit|create-admin` and
`--json` listings, through the real CLI against a real controller."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from labkit import online, tether_process

from tether.cli import main
from tether.controller.testing import ControllerHandle, run_controller


@pytest.fixture
def ctl(tmp_path: Path) -> Any:
    with run_controller(tmp_path / "ctl", tls=False) as handle:
        yield handle


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def client_config(ctl: ControllerHandle, tmp_path: Path, name: str) -> tuple[str, str]:
    issued = ctl.admin.create_client(name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(issued.config)
    return str(path), issued.token


def test_queue_and_exporters_show_the_whole_lab(ctl: ControllerHandle, tmp_path: Path) -> None:
    online(ctl, "bench-1", {"board": "rpi4"})
    alice, alice_token = client_config(ctl, tmp_path, "alice")
    bob, _ = client_config(ctl, tmp_path, "bob")
    with ctl.http(alice_token) as http:
        held = http.post("/v1/leases", json={"selector": "", "duration": 600}).json()
        waiting = http.post("/v1/leases", json={"selector": "", "duration": 600}).json()

    code, out = run("queue", "--config", bob, "--json")
    assert code == 0, out
    queue = json.loads(out)
    assert queue["total"] == 1
    assert [(q["id"], q["client"], q["position"]) for q in queue["leases"]] == [
        (waiting["id"], "alice", 1)
    ]
    code, out = run("queue", "--config", bob)
    assert code == 0 and waiting["id"] in out  # full ids when not on a terminal

    code, out = run("exporters", "--config", bob, "--json")
    (shown,) = json.loads(out)["exporters"]
    assert (shown["status"], shown["holder"], shown["lease"]) == ("leased", "alice", held["id"])
    code, out = run("lease", "list", "--config", alice, "--json")
    assert {lease["id"] for lease in json.loads(out)["leases"]} == {held["id"], waiting["id"]}


def test_maintenance_from_the_command_line_is_audited(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    online(ctl, "bench-1", {})
    alice, token = client_config(ctl, tmp_path, "alice")
    with ctl.http(token) as http:
        held = http.post("/v1/leases", json={"selector": "", "duration": 600}).json()
    db = ctl.database
    code, out = run(
        "admin", "--database", db, "maintenance", "bench-1", "on", "--reason", "fan", "--end-lease"
    )
    assert code == 0, out
    assert out.strip() == f"bench-1: maintenance (fan); ended lease(s) {held['id']}"
    code, out = run("exporters", "--config", alice, "--json")
    (shown,) = json.loads(out)["exporters"]
    assert (shown["status"], shown["maintenance"]) == ("maintenance", "fan")
    code, out = run("admin", "--database", db, "maintenance", "bench-1", "off")
    assert (code, out.strip()) == (0, "bench-1: back in the pool")
    code, out = run("admin", "--database", db, "maintenance", "nope", "on")
    assert code != 0 and "no exporter named 'nope'" in out

    code, out = run("admin", "--database", db, "audit", "--json", "--since", "1h")
    entries = json.loads(out)["entries"]
    mine = [e for e in entries if e["action"].startswith("maintenance")]
    assert [e["action"] for e in mine] == ["maintenance_on", "maintenance_off"]
    assert mine[0]["actor"].startswith("cli:") and mine[0]["details"] == {"reason": "fan"}
    code, out = run("admin", "--database", db, "audit", "--action", "grant")
    assert code == 0 and held["id"] in out


def test_create_admin_prints_a_token_that_signs_in(ctl: ControllerHandle) -> None:
    code, out = run("admin", "--database", ctl.database, "create-admin", "root")
    assert code == 0, out
    token = out.strip().splitlines()[-1]
    ctl.notice_admin_changes()
    with ctl.http(token) as http:
        assert http.get("/v1/whoami").json() == {"kind": "admin", "name": "root"}
    code, out = run("admin", "--database", ctl.database, "list", "admin", "--json")
    assert [a["name"] for a in json.loads(out)["admins"]] == ["root"]


def test_remote_strings_reach_the_terminal_as_plain_text(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    online(ctl, "bench-1", {})
    alice, _ = client_config(ctl, tmp_path, "alice")
    hostile = "\x1b]0;pwned\x07[bold red]boom[/bold red]"
    code, out = run(
        "admin", "--database", ctl.database, "maintenance", "bench-1", "on", "--reason", hostile
    )
    assert code == 0
    code, out = run("exporters", "--config", alice)
    assert code == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;pwned\\x07" in out and "[bold red]boom" in out


def test_a_request_waiting_on_maintenance_says_so_in_queue_and_lease(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    online(ctl, "bench-1", {"board": "rpi4"})
    with ctl.http(ctl.admin.create_admin("root").token) as root:
        answer = root.post(
            "/v1/admin/exporters/bench-1/maintenance", json={"on": True, "reason": "reflash"}
        )
        assert answer.status_code == 200
    alice, _ = client_config(ctl, tmp_path, "alice")
    why = "waiting: the only matching exporter is in maintenance: bench-1 (reflash)"
    command = ["lease", "acquire", "-s", "board=rpi4", "--config", alice]
    process = tether_process(*command)
    try:
        assert process.stderr is not None
        line = process.stderr.readline()  # not a terminal: one line per report
        assert "position 1" in line and why in line, line
        code, out = run("queue", "--config", alice, "--json")
        (queued,) = json.loads(out)["leases"]
        assert code == 0 and queued["waiting"] == why
        code, out = run("queue", "--config", alice)
        assert code == 0 and why in out and "why waiting" in out
        code, out = run("lease", "list", "--config", alice, "--json")
        (mine,) = json.loads(out)["leases"]
        assert code == 0 and (mine["position"], mine["waiting"]) == (1, why)
        code, out = run("lease", "list", "--config", alice)
        assert code == 0 and why in out
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert process.returncode == 130
