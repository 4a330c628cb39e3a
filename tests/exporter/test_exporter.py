"""The Exporter in this process (``run_exporter_in_thread``), over real unix sockets: fresh trees
per session, sharing and re-attaching, grace, keepalive, hooks, and the controller-facing API
(``open_session`` / ``serve_connection`` / ``close_session``)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from procs import HERE, Notifications

import tether
from tether.driver import ClientPolicy, build_client_tree
from tether.errors import AuthenticationFailed, ConnectFailed, DriverError
from tether.exporter import (
    ExporterConfig,
    hash_token,
    init_lab_certs,
    parse_config,
    run_exporter_in_thread,
)
from tether.wire import ClientConnection

PYTHON = shlex.quote(sys.executable)


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[Notifications]:
    listener = Notifications(tmp_path / "notes.sock")
    yield listener
    listener.close()


def lab(notes: Notifications, *extra: str) -> ExporterConfig:
    lines = [
        "name: lab",
        "labels: {board: rpi4}",
        *extra,
        "export:",
        f"  marker: {{type: lab_drivers.Marker, config: {{notify: {notes.path}}}}}",
    ]
    return parse_config("\n".join(lines) + "\n", "lab.yaml")


def hook_script(notes: Notifications, body: str) -> str:
    """A shell command running Python ``body`` with ``dut`` (this session) and ``note()``."""
    prelude = (
        "import os, tether, lab_drivers\n"
        "dut = tether.connect(os.environ['TETHER_HOST'])\n"
        f"note = lambda m: lab_drivers.notify({notes.path!r}, m)\n"
    )
    return f"PYTHONPATH={shlex.quote(str(HERE))} {PYTHON} -c {shlex.quote(prelude + body)}"


def test_in_thread_defaults_to_a_private_unix_socket_and_no_token(notes: Notifications) -> None:
    with run_exporter_in_thread(lab(notes)) as running:
        assert running.url.startswith("unix:///") and running.token is None
        path = Path(running.url.removeprefix("unix://"))
        assert path.is_socket()
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
        with tether.connect(running.url) as dut:
            assert dut.name == "lab" and dut.labels == {"board": "rpi4"}
            assert dut.marker.call("increment") == 1
    assert not path.exists() and not path.parent.exists()


def test_in_thread_makes_a_token_when_the_config_requires_tokens(notes: Notifications) -> None:
    config = lab(notes, f"tokens: [{hash_token('tth_someone_else')}]")
    with run_exporter_in_thread(config) as running:
        assert running.token is not None and running.token.startswith("tth_")
        with pytest.raises(AuthenticationFailed):
            tether.connect(running.url)
        with tether.connect(running.url, token=running.token) as dut:
            assert dut.marker.call("increment") == 1


def test_each_session_gets_a_fresh_tree_stopped_when_it_closes(notes: Notifications) -> None:
    with run_exporter_in_thread(lab(notes, "session_grace: 0")) as running:
        first = tether.connect(running.url)
        second = tether.connect(running.url)
        assert first.marker.call("increment") == 1
        assert first.marker.call("increment") == 2
        assert second.marker.call("increment") == 1
        assert first.session.session_id != second.session.session_id
        assert notes.next() == notes.next() == "marker started"
        first.close()
        assert notes.next() == "marker stopped"
        assert second.marker.call("increment") == 2
        second.close()
        assert notes.next() == "marker stopped"


def test_connections_share_a_session_by_its_url(notes: Notifications) -> None:
    with run_exporter_in_thread(lab(notes, "session_grace: 0")) as running:
        owner = tether.connect(running.url)
        assert owner.marker.call("increment") == 1
        assert "?session=" in owner.session_url
        with tether.connect(owner.session_url) as guest:
            assert guest.marker.call("increment") == 2
        assert owner.marker.call("increment") == 3  # the guest leaving did not end it
        assert notes.next() == "marker started"
        owner.close()
        assert notes.next() == "marker stopped"


def test_a_session_outlives_its_connection_for_the_grace_period(notes: Notifications) -> None:
    with run_exporter_in_thread(lab(notes, "session_grace: 30")) as running:
        dut = tether.connect(running.url)
        assert dut.marker.call("increment") == 1
        url = dut.session_url
        dut.close()
        with tether.connect(url) as again:
            assert again.marker.call("increment") == 2
        assert notes.next() == "marker started"
    assert notes.next() == "marker stopped"  # closing the exporter ended it


def test_a_session_past_its_grace_is_gone(notes: Notifications) -> None:
    with run_exporter_in_thread(lab(notes, "session_grace: 0")) as running:
        dut = tether.connect(running.url)
        url = dut.session_url
        dut.close()
        assert notes.wait_for("marker stopped") == ["marker started"]
        with pytest.raises(AuthenticationFailed, match="no open session"):
            tether.connect(url)


def test_a_silent_client_is_dropped_by_keepalive_and_its_drivers_stopped(
    notes: Notifications,
) -> None:
    with run_exporter_in_thread(lab(notes, "keepalive: 1", "session_grace: 0")) as running:
        path = running.url.removeprefix("unix://")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        # Handshake, then never read again: pings go unanswered.
        silent = ClientConnection(sock, keepalive=None)
        assert notes.next() == "marker started"
        started = time.monotonic()
        assert notes.next() == "marker stopped"
        assert time.monotonic() - started < 4  # keepalive 1: PING at 0.5 s, dead 2 s later
        silent.close()


def test_a_driver_crash_fails_only_its_call(notes: Notifications) -> None:
    with run_exporter_in_thread(lab(notes)) as running, tether.connect(running.url) as dut:
        with pytest.raises(DriverError, match="caught fire") as info:
            dut.marker.call("crash")
        assert info.value.remote_type == "builtins.RuntimeError"
        assert dut.marker.call("increment") == 1


def test_hooks_run_around_the_session_and_reach_it_through_tether_host(
    notes: Notifications,
) -> None:
    before = hook_script(notes, "note('before %d' % dut.marker.call('increment'))")
    after = hook_script(notes, "note('after %d' % dut.marker.call('increment'))")
    config = lab(
        notes,
        "session_grace: 0",
        "hooks: " + json.dumps({"before_lease": before, "after_lease": after}),
    )
    with run_exporter_in_thread(config) as running:
        with tether.connect(running.url) as dut:
            assert notes.wait_for("before 1") == ["marker started"]
            assert dut.marker.call("increment") == 2  # the hook used this very session
        assert notes.next() == "after 3"
        assert notes.next() == "marker stopped"


def test_a_failed_before_lease_with_end_lease_refuses_the_session(notes: Notifications) -> None:
    config = lab(
        notes, "hooks: {before_lease: 'echo flashing failed; exit 3', on_failure: end_lease}"
    )
    with run_exporter_in_thread(config) as running:
        with pytest.raises(ConnectFailed, match="before_lease failed"):
            tether.connect(running.url)
        assert notes.wait_for("marker stopped") == ["marker started"]
        assert running.exporter.sessions == {}
        assert not running.exporter.exit_requested.is_set()


def test_a_hook_past_its_timeout_is_killed_and_warn_carries_on(notes: Notifications) -> None:
    config = lab(notes, "hooks: {before_lease: 'sleep 30', timeout: 0.2}")
    with run_exporter_in_thread(config) as running:
        started = time.monotonic()
        with tether.connect(running.url) as dut:
            assert time.monotonic() - started < 5
            assert dut.marker.call("increment") == 1


def test_a_failed_hook_with_exit_asks_the_exporter_to_exit(notes: Notifications) -> None:
    config = lab(notes, "hooks: {before_lease: 'exit 1', on_failure: exit}")
    with run_exporter_in_thread(config) as running:
        with pytest.raises(ConnectFailed):
            tether.connect(running.url)
        assert running.exporter.exit_requested.is_set()
        assert running.exporter.exit_status == 1


def test_lease_sessions_are_served_over_given_sockets_without_a_token(
    notes: Notifications,
) -> None:
    config = lab(notes, f"tokens: [{hash_token('tth_nobody')}]")
    with run_exporter_in_thread(config) as running:
        exporter, loop = running.exporter, running.loop_thread

        async def open_lease() -> Any:
            return await exporter.open_session("lease-42")

        session = loop.run(open_lease())
        assert session.lease_id == "lease-42" and not session.owned_by_connections
        assert notes.next() == "marker started"
        for expected in (1, 2):  # the lease session survives its connections
            ours, theirs = socket.socketpair()

            async def serve(sock: socket.socket = theirs) -> None:
                await exporter.serve_connection(sock, session_id=session.id, authenticate=False)

            served = loop.submit(serve())
            connection = ClientConnection(ours, keepalive=None)
            assert connection.server_meta["session"] == session.id
            tree = build_client_tree(connection.server_meta["report"], connection, ClientPolicy())
            assert tree.marker.call("increment") == expected
            connection.close()
            served.result(5)
        assert session.id in exporter.sessions

        async def close_lease() -> None:
            await exporter.close_session(session.id)

        loop.run(close_lease())
        assert notes.next() == "marker stopped"
        assert exporter.sessions == {}


def test_env_variables_supply_token_defaults(
    notes: Notifications, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = lab(notes, f"tokens: [{hash_token('tth_nobody')}]")
    with run_exporter_in_thread(config) as running:
        assert running.token is not None
        monkeypatch.setitem(os.environ, "TETHER_TOKEN", running.token)
        with tether.connect(running.url) as dut:
            assert dut.marker.call("increment") == 1


def test_mutual_tls_requires_a_client_certificate_signed_by_the_ca(
    notes: Notifications, tmp_path: Path
) -> None:
    certs = init_lab_certs(tmp_path / "certs")
    config = lab(
        notes, f"tls: {{cert: {certs.server_cert}, key: {certs.server_key}, ca: {certs.ca}}}"
    )
    with run_exporter_in_thread(config, listen="tls://127.0.0.1:0") as running:
        assert running.url.startswith("tls://127.0.0.1:")
        with pytest.raises(ConnectFailed):
            tether.connect(running.url, ca=certs.ca)
        with tether.connect(
            running.url, ca=certs.ca, cert=certs.client_cert, key=certs.client_key
        ) as dut:
            assert dut.marker.call("increment") == 1


def test_a_client_that_gives_up_during_before_lease_leaves_no_session(
    notes: Notifications,
) -> None:
    config = lab(notes, "hooks: {before_lease: 'sleep 30', timeout: 60}")
    with run_exporter_in_thread(config) as running:
        with pytest.raises(ConnectFailed):
            tether.connect(running.url, timeout=0.5)  # the handshake waits for the hook
        assert notes.wait_for("marker stopped") == ["marker started"]
        assert running.exporter.sessions == {}


def test_serving_tls_with_neither_tokens_nor_client_certificates_warns(
    notes: Notifications, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio
    import logging

    from tether.exporter import Exporter

    certs = init_lab_certs(tmp_path / "certs")
    config = lab(notes, f"tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}")

    async def serve_once() -> None:
        exporter = Exporter(config)
        await exporter.start()
        try:
            await exporter.listen("tls://127.0.0.1:0")
        finally:
            await exporter.aclose()

    with caplog.at_level(logging.WARNING, logger="tether.exporter"):
        asyncio.run(serve_once())
    assert any("no tokens and no client certificates" in r.getMessage() for r in caplog.records)
