"""``tether certs init`` and ``tether exporter token|check`` (click's runner, in-process)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from tether.cli import main
from tether.exporter import load_config, server_ssl_context
from tether.security import is_token_hash

BAD_DIR = Path(__file__).parent / "bad_configs"


def test_certs_init_writes_a_lab_and_says_what_it_wrote(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["certs", "init", str(tmp_path / "lab")])
    assert result.exit_code == 0, result.output
    written = [line.split()[1] for line in result.output.splitlines()]
    names = sorted(Path(path).name for path in written)
    assert names == ["ca.key", "ca.pem", "client.key", "client.pem", "server.key", "server.pem"]
    assert "tls.cert" in result.output and "keep offline" in result.output
    server_ssl_context(tmp_path / "lab/server.pem", tmp_path / "lab/server.key")
    again = CliRunner().invoke(main, ["certs", "init", str(tmp_path / "lab")])
    assert again.exit_code == 1 and "refusing to overwrite" in again.output


def test_exporter_token_prints_a_token_and_its_hash() -> None:
    from tether.exporter import hash_token

    result = CliRunner().invoke(main, ["exporter", "token"])
    assert result.exit_code == 0
    lines = dict(line.split(":", 1) for line in result.output.splitlines())
    token, digest = lines["token"].strip(), lines["hash"].strip()
    assert token.startswith("tth_") and is_token_hash(digest)
    assert hash_token(token) == digest


def test_exporter_check_reports_ok_or_every_problem(tmp_path: Path) -> None:
    good = tmp_path / "lab.yaml"
    good.write_text("name: lab\nexport:\n  power: {type: tether.drivers.power.MockPower}\n")
    load_config(good)
    result = CliRunner().invoke(main, ["exporter", "check", str(good)])
    assert result.exit_code == 0 and result.output.strip() == f"{good}: ok"
    bad = BAD_DIR / "unknown_top_level_key.yaml"
    result = CliRunner().invoke(main, ["exporter", "check", str(bad)])
    assert result.exit_code == 2
    assert "unknown_top_level_key.yaml:2: lables: unknown key" in result.output
