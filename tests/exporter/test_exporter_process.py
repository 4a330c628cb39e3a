"""Real processes: ``tether exporter serve`` over TLS on loopback, clients in this process and
in child processes, ``kill -9`` on either side, bad tokens, bad configs, SIGTERM."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from procs import ExporterProcess, Notifications, subprocess_env

import tether
from tether.errors import AuthenticationFailed, ConnectFailed, ConnectionLost, DriverError
from tether.exporter import LabCerts, generate_token, hash_token, init_lab_certs

BAD_DIR = Path(__file__).parent / "bad_configs"
TOKEN = generate_token()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> LabCerts:
    return init_lab_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[Notifications]:
    listener = Notifications(tmp_path / "notes.sock")
    yield listener
    listener.close()


def write_config(tmp_path: Path, certs: LabCerts, notes: Notifications, **extra: Any) -> Path:
    lines = [
        "name: lab",
        f"tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}",
        f"tokens: [{hash_token(TOKEN)}]",
        f"keepalive: {extra.get('keepalive', 1)}",
        f"session_grace: {extra.get('session_grace', 0)}",
        "listen: [tls://127.0.0.1:0]",
        "export:",
        f"  marker: {{type: lab_drivers.Marker, config: {{notify: {notes.path}}}}}",
        "  power: {type: tether.drivers.power.MockPower}",
    ]
    path = tmp_path / "lab.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def exporter(
    tmp_path: Path, certs: LabCerts, notes: Notifications
) -> Iterator[tuple[ExporterProcess, str]]:
    process = ExporterProcess(
        write_config(tmp_path, certs, notes), "--listen", "tcp://127.0.0.1:0", log=tmp_path / "log"
    )
    urls = process.wait_ready()
    yield process, urls[0]
    process.close()


def test_serve_prints_its_urls_and_serves_calls_over_tls(
    exporter: tuple[ExporterProcess, str], certs: LabCerts, notes: Notifications
) -> None:
    process, url = exporter
    assert url.startswith("tls://127.0.0.1:") and not url.endswith(":0")
    assert process.urls[1].startswith("tcp://127.0.0.1:")
    with tether.connect(url, token=TOKEN, ca=certs.ca) as dut:
        assert notes.next() == "marker started"
        assert dut.marker.call("increment") == 1
        dut.power.on()
        assert dut.power.status() is True
        with pytest.raises(DriverError, match="caught fire"):
            dut.marker.call("crash")
        assert dut.marker.call("increment") == 2  # the crash was isolated to its call
    assert notes.next() == "marker stopped"  # closing the connection ended the session


def test_a_wrong_or_missing_token_is_rejected_before_any_driver_runs(
    exporter: tuple[ExporterProcess, str], certs: LabCerts, notes: Notifications
) -> None:
    process, url = exporter
    with pytest.raises(AuthenticationFailed, match="invalid token"):
        tether.connect(url, token=generate_token(), ca=certs.ca)
    with pytest.raises(AuthenticationFailed, match="token is required"):
        tether.connect(url, ca=certs.ca)
    with tether.connect(url, token=TOKEN, ca=certs.ca) as dut:
        assert dut.marker.call("increment") == 1
    # The first driver start of this exporter is the authenticated client's session.
    assert notes.next() == "marker started"
    assert process.terminate() == 0
    log = process.stderr()
    assert log.count("rejected connection from ('127.0.0.1'") == 2, log
    assert "invalid token" in log and "token is required" in log


def test_a_client_that_does_not_trust_the_ca_cannot_connect(
    exporter: tuple[ExporterProcess, str], tmp_path: Path
) -> None:
    other = init_lab_certs(tmp_path / "other")
    with pytest.raises(ConnectFailed, match=r"certificate verify failed|TLS handshake failed"):
        tether.connect(exporter[1], token=TOKEN, ca=other.ca)


CLIENT = textwrap.dedent(
    """
    import sys, tether
    dut = tether.connect(sys.argv[1], token=sys.argv[2], ca=sys.argv[3])
    print(dut.marker.call("increment"), flush=True)
    sys.stdin.read()
    """
)


def test_kill_9_of_the_client_stops_its_drivers(
    exporter: tuple[ExporterProcess, str], certs: LabCerts, notes: Notifications
) -> None:
    _, url = exporter
    client = subprocess.Popen(
        [sys.executable, "-c", CLIENT, url, TOKEN, str(certs.ca)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=subprocess_env(),
        text=True,
    )
    try:
        assert client.stdout is not None
        assert client.stdout.readline().strip() == "1"
        assert notes.next() == "marker started"
        client.kill()
        client.wait()
        assert notes.next() == "marker stopped"
    finally:
        client.kill()
        client.wait()
        for pipe in (client.stdin, client.stdout):
            assert pipe is not None
            pipe.close()


def test_kill_9_of_the_exporter_mid_call_raises_connection_lost(
    exporter: tuple[ExporterProcess, str], certs: LabCerts, notes: Notifications
) -> None:
    process, url = exporter
    dut = tether.connect(url, token=TOKEN, ca=certs.ca)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            dut.marker.call("hang")
        except BaseException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    assert notes.wait_for("marker hanging") == ["marker started"]
    started = time.monotonic()
    process.kill()
    caller.join(10)
    assert not caller.is_alive()
    assert time.monotonic() - started < 5
    assert len(outcome) == 1 and isinstance(outcome[0], ConnectionLost)
    with pytest.raises(ConnectionLost, match="reconnecting failed"):
        dut.marker.call("increment")
    dut.close()


def test_sigterm_stops_the_sessions_drivers_and_exits_0(
    exporter: tuple[ExporterProcess, str], certs: LabCerts, notes: Notifications
) -> None:
    process, url = exporter
    dut = tether.connect(url, token=TOKEN, ca=certs.ca)
    assert dut.marker.call("increment") == 1
    assert notes.next() == "marker started"
    assert process.terminate() == 0
    assert notes.next() == "marker stopped"
    with pytest.raises(ConnectionLost):
        dut.marker.call("increment")
    dut.close()


@pytest.mark.parametrize(
    "name, expected",
    [
        ("unknown_top_level_key.yaml", "unknown_top_level_key.yaml:2: lables: unknown key"),
        ("type_not_importable.yaml", "type_not_importable.yaml:"),
        ("listen_tls_without_certs.yaml", "needs a `tls:` section"),
    ],
)
def test_a_bad_config_exits_2_naming_file_and_line(name: str, expected: str) -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "tether"), "exporter", "serve", str(BAD_DIR / name)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=30,
    )
    assert result.returncode == 2
    assert expected in result.stderr
    assert result.stdout == ""


def test_nothing_to_listen_on_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "lab.yaml"
    config.write_text("name: lab\nexport:\n  power: {type: tether.drivers.power.MockPower}\n")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "tether"), "exporter", "serve", str(config)],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=30,
    )
    assert result.returncode == 2
    assert "nothing to listen on" in result.stderr and "--listen" in result.stderr
