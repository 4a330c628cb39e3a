"""Leases are exclusive on the exporter (issue 12, item 8): an exporter with both a
``controller:`` section and a direct TLS listener with tokens refuses direct sessions while a
controller lease is live, ends the direct sessions it had when the lease began, and serves
direct clients again once the lease ended; the next lease's session opens only once the last
lease's session closed (found by ``make soak``). Real controller (TLS, SQLite, relay), real
agent, real TLS listener."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tether
from relaylab import release_fifo, run_agent_exporter
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


class _Lines(logging.Handler):
    """The exporter's log lines, in order, as they are written."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.put(record.getMessage())

    def next_with(self, wanted: Callable[[str], bool]) -> str:
        """The next line that is ``wanted`` (30 s at most)."""
        while True:
            line = self.lines.get(timeout=30)
            self.seen.append(line)
            if wanted(line):
                return line


def test_the_next_lease_opens_only_once_the_last_lease_session_closed(
    ctl: ControllerHandle, tmp_path: Path
) -> None:
    # The controller grants bob's waiting request the moment alice releases, while alice's
    # session is still closing (its after_lease hook is held on a fifo here). Bob's drivers
    # must not start until alice's have stopped: one holder on the board at a time.
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    once = tmp_path / "held-once"
    issued = ctl.admin.create_exporter("bench-1", labels={"board": "rpi4"})
    config = (
        issued.config
        # Held on the fifo after alice's lease only (bob's runs through).
        + f"hooks:\n  after_lease: 'test -e {once} || {{ touch {once}; read answer < {gate}; }}'\n"
        + "export:\n  power: {type: tether.drivers.power.MockPower}\n"
    )
    accounts = {}
    for name in ("alice", "bob"):
        who = ctl.admin.create_client(name)
        accounts[name] = {"controller": ctl.url, "token": who.token, "ca": ctl.ca}
    lines = _Lines()
    logger = logging.getLogger("tether.exporter")
    logger.addHandler(lines)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    bob_waits = threading.Event()
    outcome: dict[str, Any] = {}

    def bob() -> None:
        try:
            with tether.lease(
                "board=rpi4", "1m", on_wait=lambda lease: bob_waits.set(), **accounts["bob"]
            ) as dut:
                outcome["lease"] = dut.session.lease.id
                outcome["status"] = dut.power.status()
        except Exception as exc:
            outcome["error"] = exc

    try:
        with run_agent_exporter(config):
            with tether.lease("board=rpi4", "1m", **accounts["alice"]) as dut:  # type: ignore[arg-type]
                alice_lease = dut.session.lease.id
                dut.power.on()
                waiter = threading.Thread(target=bob)
                waiter.start()
                assert bob_waits.wait(30), "bob's request never queued"
            # Released: alice's after_lease holds her session open; bob is granted already.
            try:
                first = lines.next_with(
                    lambda line: (
                        ("opened for lease" in line and alice_lease not in line)
                        or f"session of lease {alice_lease}" in line
                    )
                )
                assert "waiting for the session of lease" in first, lines.seen
            finally:
                release_fifo(gate, "done\n")  # (also when it failed: the agent can then stop)
                waiter.join(60)
    finally:
        logger.removeHandler(lines)
        logger.setLevel(previous_level)
    assert "error" not in outcome, outcome
    assert outcome["status"] is False  # a fresh tree: nothing of alice's survives
    while not lines.lines.empty():
        lines.seen.append(lines.lines.get())
    closed = next(i for i, line in enumerate(lines.seen) if line.endswith(" closed"))
    opened = next(
        i for i, s in enumerate(lines.seen) if f"opened for lease {outcome['lease']}" in s
    )
    assert closed < opened, lines.seen
