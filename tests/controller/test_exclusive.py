"""Leases are exclusive on the exporter (issue 12, item 8): an exporter with both a
``controller:`` section and a direct TLS listener with tokens refuses direct sessions while a
controller lease is live, ends the direct sessions it had when the lease began, and serves
direct clients again once the lease ended. Real controller (TLS, SQLite, relay), real agent,
real TLS listener."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import tether
from relaylab import run_agent_exporter
from tether.controller.testing import ControllerHandle, run_controller
from tether.errors import AuthenticationFailed, TetherError
from tether.security import generate_token, hash_token, init_lab_certs

TOKEN = generate_token()


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[ControllerHandle]:
    with run_controller(tmp_path, relay=True) as ctl:
        yield ctl


def test_direct_sessions_are_refused_while_a_lease_is_live(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    certs = init_lab_certs(tmp_path / "exporter-certs")
    issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
    config = (
        issued.config
        + f"tls: {{cert: {certs.server_cert}, key: {certs.server_key}}}\n"
        + f"tokens: [{hash_token(TOKEN)}]\n"
        + "export:\n  power: {type: tether.drivers.power.MockPower}\n"
    )
    alice = ctl.admin.create_client("alice")
    account = {"controller": ctl.url, "token": alice.token, "ca": ctl.ca}
    with run_agent_exporter(config) as running:
        url = running.run(running.exporter.listen("tls://127.0.0.1:0"))
        # No lease: the direct listener serves as before.
        direct = tether.connect(url, token=TOKEN, ca=certs.ca)
        direct.power.on()
        assert direct.power.status() is True

        with tether.lease("board=rpi4", "1m", **account) as dut:  # type: ignore[arg-type]
            # The direct session was ended before the lease's session opened...
            with pytest.raises(TetherError):
                direct.power.off()
            # ...and a new direct client is refused, saying why.
            with pytest.raises(AuthenticationFailed, match="leased through the controller"):
                tether.connect(url, token=TOKEN, ca=certs.ca)
            # The lease holder alone drives the board (a fresh tree: power off).
            assert dut.power.status() is False
            dut.power.on()
            assert dut.power.status() is True
            lease_id = next(iter(running.agent.sessions))
            session = running.session_of(lease_id)
        direct.close()

        running.wait_session_closed(session)  # released: after_lease ran, drivers stopped
        with tether.connect(url, token=TOKEN, ca=certs.ca) as again:
            assert again.power.status() is False
