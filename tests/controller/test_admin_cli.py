"""`tether admin ...` and `tether controller serve` argument errors, through the real CLI
(in process, with click's runner: what is checked is the arguments, not the process)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tether.cli import main
from tether.controller.testing import run_controller


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'lab.db'}"


def admin(db: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["admin", "--database", db, *args])
    return result.exit_code, result.output


def test_created_identities_work_against_a_controller_on_the_same_database(
    tmp_path: Path, db: str
) -> None:
    code, out = admin(db, "create-client", "alice", "--endpoint", "https://lab:8443")
    assert code == 0, out
    assert out.startswith("# tether client config for alice (the token is shown only once)")
    client = yaml.safe_load(out)
    assert client["endpoint"] == "https://lab:8443"
    assert client["token"].startswith("tth_")

    code, out = admin(
        db, "create-exporter", "bench-1", "--label", "board=rpi4", "--label", "site=a"
    )
    assert code == 0, out
    exporter = yaml.safe_load(out)
    assert exporter["name"] == "bench-1"
    assert exporter["labels"] == {"board": "rpi4", "site": "a"}
    assert exporter["controller"]["token"].startswith("tth_")

    with run_controller(tmp_path / "ctl", database=db, tls=False) as ctl:
        with ctl.http(exporter["controller"]["token"]) as http:
            assert http.post("/v1/exporter/register", json={}).status_code == 200
        with ctl.http(client["token"]) as http:
            got = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60}).json()
            assert got["exporters"] == ["bench-1"]

            # Rotating from the CLI (another process's view of the database) revokes the old token.
            code, out = admin(db, "rotate", "client", "alice")
            assert code == 0, out
            ctl.notice_admin_changes()  # what the controller's upkeep does every second
            refused = http.get("/v1/whoami")
            assert (refused.status_code, refused.json()["error"]) == (401, "unauthorized")
            new = yaml.safe_load(out)["token"]
        with ctl.http(new) as http:
            assert http.get("/v1/whoami").json() == {"kind": "client", "name": "alice"}

    code, out = admin(db, "list", "exporter")
    assert out.strip() == "bench-1 board=rpi4,site=a"
    code, out = admin(db, "delete", "client", "alice")
    assert (code, out.strip()) == (0, "deleted client alice (1 live lease(s) ended)")
    code, out = admin(db, "list", "client")
    assert out.strip() == ""


def test_token_file_is_written_private_and_referenced(tmp_path: Path, db: str) -> None:
    token_file = tmp_path / "e1.token"
    code, out = admin(db, "create-exporter", "e1", "--token-file", str(token_file))
    assert code == 0, out
    assert yaml.safe_load(out)["controller"]["token_file"] == str(token_file)
    assert "tth_" not in out
    assert token_file.read_text().startswith("tth_")
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600


def test_policies_from_the_command_line_and_from_a_file(tmp_path: Path, db: str) -> None:
    code, out = admin(
        db, "policy", "set", "ci", "--clients", "ci-1,ci-2", "--selector", "board=rpi4",
        "--priority", "10", "--max-duration", "2h",
    )  # fmt: skip
    assert (code, out.strip()) == (0, "policy ci set")
    code, out = admin(db, "policy", "list")
    assert out.strip() == (
        "ci: clients=ci-1,ci-2 selector='board=rpi4' priority=10 max_duration=7200s"
    )
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_text(
        "policies:\n"
        "  - {name: everyone, clients: ['*'], selector: 'site=a', max_duration: 30m}\n"
        "  - {name: night, clients: [nightly], selector: '', priority: 5}\n"
    )
    code, out = admin(db, "policy", "apply", str(policy_file))
    assert (code, out.strip()) == (0, f"2 policies applied from {policy_file}")
    code, out = admin(db, "policy", "list")
    assert out.splitlines() == [
        "everyone: clients=* selector='site=a' priority=0 max_duration=1800s",
        "night: clients=nightly selector='' priority=5 max_duration=28800s",
    ]
    assert admin(db, "policy", "delete", "night")[0] == 0
    code, out = admin(db, "policy", "delete", "night")
    assert code == 1
    assert "no policy named 'night'" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("policies: 3\n", "expected a mapping with a 'policies' list"),
        ("policies:\n  - {name: x, selector: 'a in b'}\n", "policies[0]: bad selector"),
        ("policies:\n  - {name: x, max_duration: soon}\n", "policies[0]: bad max_duration"),
        ("policies:\n  - {name: x, colour: red}\n", "policies[0]: unknown field(s) colour"),
        ("policies:\n  - {name: x, priority: high}\n", "priority: expected an integer"),
    ],
)
def test_bad_policy_files_are_refused_with_the_place(
    tmp_path: Path, db: str, content: str, message: str
) -> None:
    policy_file = tmp_path / "bad.yaml"
    policy_file.write_text(content)
    code, out = admin(db, "policy", "apply", str(policy_file))
    assert code == 1
    assert message in out
    assert str(policy_file) in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create-client", "bad name"], "bad client name 'bad name'"),
        (["create-exporter", "e1", "--label", "noequals"], "expected KEY=VALUE"),
        (["create-exporter", "e1", "--label", "a=b c"], "bad label 'a'"),
        (["rotate", "client", "ghost"], "no client named 'ghost'"),
        (["delete", "exporter", "ghost"], "no exporter named 'ghost'"),
    ],
)
def test_bad_admin_input_is_refused_clearly(db: str, args: list[str], message: str) -> None:
    code, out = admin(db, *args)
    assert code != 0
    assert message in out


def test_duplicate_names_are_refused(db: str) -> None:
    assert admin(db, "create-client", "alice")[0] == 0
    code, out = admin(db, "create-client", "alice")
    assert (code, "client 'alice' already exists" in out) == (1, True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "https://127.0.0.1:0"], "needs --tls-cert and --tls-key"),
        (["--listen", "ftp://x:1"], "expected https://HOST:PORT"),
        (["--listen", "http://127.0.0.1:0", "--database", "mysql://x"], "bad database URL"),
        (
            ["--listen", "http://127.0.0.1:0", "--heartbeat-interval", "30"],
            "must be longer than the interval",
        ),
    ],
)
def test_serve_refuses_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    db = ["--database", f"sqlite:///{tmp_path / 'c.db'}"] if "--database" not in args else []
    done = CliRunner().invoke(main, ["controller", "serve", *db, *args])
    assert done.exit_code == 1
    assert message in done.stderr


def test_printed_configs_name_token_files_and_cas_by_absolute_path(
    tmp_path: Path, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out = admin(db, "create-client", "alice", "--ca", "certs/ca.pem")
    assert code == 0, out
    assert yaml.safe_load(out)["ca"] == str(tmp_path / "certs" / "ca.pem")
    code, out = admin(
        db, "create-exporter", "bench-1", "--token-file", "bench.token", "--ca", "ca.pem"
    )
    assert code == 0, out
    section = yaml.safe_load(out)["controller"]
    assert section["token_file"] == str(tmp_path / "bench.token")
    assert section["ca"] == str(tmp_path / "ca.pem")


def test_a_token_on_the_command_line_draws_a_warning(db: str) -> None:
    result = CliRunner().invoke(
        main, ["exporters", "--controller", "http://127.0.0.1:9", "--token", "tth_x"]
    )
    assert "visible to every user" in result.output


def test_admin_commands_do_not_load_the_web_stack(tmp_path: Path) -> None:
    # `tether admin` works on the database alone: FastAPI, uvicorn and the dashboard's
    # libraries are imported only by what serves (half the start-up time of a command).
    child = (
        "import sys\n"
        "from tether.cli import main\n"
        "try:\n"
        f"    main(['admin', '--database', 'sqlite:///{tmp_path}/c.db', 'create-client', 'bob'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = [m for m in ('fastapi', 'uvicorn', 'jinja2', 'prometheus_client', 'psycopg')"
        " if m in sys.modules]\n"
        "print('loaded:', loaded, file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert "token" in out.stdout, out.stderr
    assert "loaded: []" in out.stderr
    import tether.controller as package

    assert package.serve is package.__getattr__("serve")  # the serving names still resolve
    assert {"create_app", "Controller", "serve"} <= set(dir(package))
