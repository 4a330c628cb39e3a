"""A lease's end and an exporter's restart, seen from the client: a real controller with its
relay, a real exporter with its agent. After expiry every call raises ``LeaseExpired`` ("the
lease L expired at T") at once, without dialling the relay again; after the exporter restarted
under a live lease, ``SessionLost`` ("the exporter restarted; the session is gone"), not
``NodeNotFound``; ``dut`` inside ``tether shell`` says either in one line and exits 1; the
pytest plugin's ``dut`` raises ``LeaseExpired`` in the tests after the expiry."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from labkit import MOCK_POWER

import tether
from relaylab import AgentExporter, acquire_lease, run_agent_exporter
from tether.client import _lease
from tether.controller.testing import ControllerHandle, FakeClock, IssuedIdentity, run_controller
from tether.errors import ConnectionLost, LeaseExpired, SessionLost

# pytester restores sys.modules after each test: the controller fixtures come first in the
# signature that uses it (as in test_pytest_plugin.py).
pytest_plugins = ["pytester"]


@pytest.fixture
def ctl(tmp_path: Path, clock: FakeClock) -> Iterator[ControllerHandle]:
    """The relay on; heartbeats never lapse, so only ``clock.advance`` ends a lease."""
    with run_controller(tmp_path, relay=True, clock=clock, heartbeat_timeout=3600) as ctl:
        yield ctl


@pytest.fixture
def dials(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The lease ids the client's sessions dial the relay for, in order."""
    seen: list[str] = []
    dial = _lease.dial_relay

    def counting(relay: str, lease_id: str, *args: object, **kwargs: object) -> object:
        seen.append(lease_id)
        return dial(relay, lease_id, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_lease, "dial_relay", counting)
    return seen


def account(ctl: ControllerHandle) -> dict[str, object]:
    alice = ctl.admin.create_client("alice")
    return {"controller": ctl.url, "token": alice.token, "ca": ctl.ca}


def expire(ctl: ControllerHandle, clock: FakeClock, bench: AgentExporter, lease_id: str) -> None:
    """Move the controller past the lease's end; returns once the exporter closed its session
    (the relay has cut the lease's connections by then)."""
    session = bench.session_of(lease_id)
    clock.advance(3600)
    ctl.upkeep_now()
    bench.wait_session_closed(session)


def test_calls_after_expiry_raise_lease_expired_without_dialling_again(
    ctl: ControllerHandle, clock: FakeClock, bench: AgentExporter, dials: list[str]
) -> None:
    with tether.lease("board=rpi4", "1m", **account(ctl)) as dut:  # type: ignore[arg-type]
        dut.power.on()
        lease_id = dut.session.lease.id  # type: ignore[attr-defined]
        assert dials == [lease_id]
        expire(ctl, clock, bench, lease_id)
        with pytest.raises(LeaseExpired) as first:
            dut.power.status()
        assert str(first.value).startswith(f"the lease {lease_id} expired at 20")
        assert first.value.lease_id == lease_id and first.value.state == "expired"
        assert first.value.ended_at and first.value.ended_at in str(first.value)
        for _ in range(20):
            with pytest.raises(LeaseExpired, match=f"the lease {lease_id} expired at"):
                dut.power.status()
        with pytest.raises(LeaseExpired):
            list(dut.session.streaming_call("x", "y", [], {}))  # type: ignore[attr-defined]
        assert dials == [lease_id]  # one dial, the first: the end was learnt once
        assert isinstance(first.value, ConnectionLost)  # callers catching that still do


def test_calls_after_an_exporter_restart_raise_session_lost(
    ctl: ControllerHandle, issued: IssuedIdentity, dials: list[str]
) -> None:
    with contextlib.ExitStack() as stack:
        stack.enter_context(run_agent_exporter(issued.config + MOCK_POWER))
        with tether.lease("board=rpi4", "10m", **account(ctl)) as dut:  # type: ignore[arg-type]
            dut.power.on()
            old = dut.session.session_id
            stack.close()  # the exporter stops: its sessions and relay dials go with it
            stack.enter_context(run_agent_exporter(issued.config + MOCK_POWER))
            try:
                dut.power.status()
            except SessionLost:
                pass  # the cut was noticed before the call: it re-dialled at once
            except ConnectionLost as exc:  # the call met the cut
                assert type(exc) is ConnectionLost
            else:
                raise AssertionError("a call reached a session the exporter does not have")
            with pytest.raises(SessionLost) as lost:
                dut.power.status()
            assert str(lost.value) == f"the exporter bench-1 restarted; the session {old} is gone"
            dialled = len(dials)
            for _ in range(20):
                with pytest.raises(SessionLost, match="restarted; the session"):
                    dut.power.on()
            assert len(dials) == dialled <= 2  # once more at most, to learn it; then never


# -- dut inside tether shell ------------------------------------------------------------------


class Shell:
    """``tether shell --lease ID -- sh -c 'read < GATE; dut power on'``: ``dut`` runs when
    :meth:`open_gate` is called, and its stderr lines are read as they come."""

    def __init__(self, tmp_path: Path, lease_id: str, client_config: str) -> None:
        config = tmp_path / "alice.yaml"
        config.write_text(client_config)
        self.gate = tmp_path / "gate"
        os.mkfifo(self.gate)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        env["TETHER_CONFIG"] = str(config)
        script = f"read x < {self.gate} && dut power on"
        argv = [sys.executable, "-c", "from tether.cli import main; main()", "shell"]
        argv += ["--lease", lease_id, "--", "sh", "-c", script]
        self.process = subprocess.Popen(argv, env=env, text=True, stderr=subprocess.PIPE)
        self.guard = threading.Timer(60, self.process.kill)  # a safety net, never the pass
        self.guard.start()
        self.lines: list[str] = []

    def wait_for(self, text: str) -> str:
        assert self.process.stderr is not None
        while line := self.process.stderr.readline():
            self.lines.append(line)
            if text in line:
                return line
        raise AssertionError(f"the shell ended without saying {text!r}: {self.lines}")

    def open_gate(self) -> None:
        def write() -> None:  # a daemon thread: the test never blocks on the fifo
            with open(self.gate, "w") as sink:
                sink.write("go\n")

        threading.Thread(target=write, daemon=True).start()

    def finish(self) -> int:
        try:
            _, rest = self.process.communicate(timeout=30)
            self.lines.extend(rest.splitlines(keepends=True))
        finally:
            self.guard.cancel()
        return self.process.returncode


def test_dut_in_a_shell_says_the_lease_expired_and_dials_nothing(
    ctl: ControllerHandle,
    clock: FakeClock,
    bench: AgentExporter,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alice = ctl.admin.create_client("alice")
    lease_id = acquire_lease(ctl, alice.token)
    shell = Shell(tmp_path, lease_id, alice.config)
    shell.wait_for(f"using bench-1 (lease {lease_id})")
    session = bench.session_of(lease_id)
    caplog.set_level(logging.INFO, logger="tether.controller.relay")
    clock.advance(3600)
    ctl.upkeep_now()
    bench.wait_session_closed(session)
    shell.wait_for("expired at")  # the shell's watcher saw it: dut is refused locally
    shell.open_gate()
    line = shell.wait_for("dut:")
    assert line.startswith(f"dut: the lease {lease_id} expired at 20"), shell.lines
    assert shell.finish() == 1, shell.lines
    assert not any("Traceback" in each for each in shell.lines), shell.lines
    refused = [r for r in caplog.records if "dial for lease" in r.getMessage()]
    assert refused == []  # nobody dialled the relay for the ended lease


def test_dut_in_a_shell_says_the_exporter_restarted(
    ctl: ControllerHandle, issued: IssuedIdentity, tmp_path: Path
) -> None:
    alice = ctl.admin.create_client("alice")
    with contextlib.ExitStack() as stack:
        stack.enter_context(run_agent_exporter(issued.config + MOCK_POWER))
        lease_id = acquire_lease(ctl, alice.token)
        shell = Shell(tmp_path, lease_id, alice.config)
        shell.wait_for(f"using bench-1 (lease {lease_id})")
        stack.close()
        stack.enter_context(run_agent_exporter(issued.config + MOCK_POWER))
        shell.open_gate()
        line = shell.wait_for("dut:")
        assert line.startswith("dut: the exporter bench-1 restarted; the session "), shell.lines
        assert line.rstrip().endswith(" is gone")
        assert shell.finish() == 1, shell.lines


# -- the pytest plugin ------------------------------------------------------------------------

PLUGIN_TESTS = """
import pytest
from tether.errors import LeaseExpired

def test_before(dut):
    dut.power.on()
    with open({ready!r}, "w") as ready:  # the outer test expires the lease now...
        ready.write("on\\n")
    with open({gate!r}) as gate:  # ...and says when it is done
        gate.read()

def test_after(dut):
    with pytest.raises(LeaseExpired, match="the lease .* expired at"):
        dut.power.status()

def test_after_again(dut):
    with pytest.raises(LeaseExpired, match="the lease .* expired at"):
        dut.power.on()
"""


def test_the_pytest_plugins_dut_raises_lease_expired(
    ctl: ControllerHandle,
    clock: FakeClock,
    bench: AgentExporter,
    pytester: pytest.Pytester,
) -> None:
    alice = ctl.admin.create_client("alice")
    ready, gate = pytester.path / "ready", pytester.path / "gate"
    os.mkfifo(ready)
    os.mkfifo(gate)
    pytester.makepyfile(test_board=PLUGIN_TESTS.format(ready=str(ready), gate=str(gate)))
    failures: list[BaseException] = []

    def expire_when_ready() -> None:
        try:
            with open(ready) as said:  # blocks until test_before has powered on
                said.read()
            with ctl.http(alice.token) as http:
                [held] = http.get("/v1/leases").json()["leases"]
            expire(ctl, clock, bench, held["id"])
        except BaseException as exc:
            failures.append(exc)
        finally:
            with open(gate, "w") as go:
                go.write("go\n")

    helper = threading.Thread(target=expire_when_ready, daemon=True)
    helper.start()
    result = pytester.runpytest_subprocess(
        f"--tether-controller={ctl.url}",
        f"--tether-token={alice.token}",
        f"--tether-ca={ctl.ca}",
        "--tether-selector=board=rpi4",
        "-p",
        "no:cacheprovider",
    )
    for _ in range(300):  # only when the inner run failed early: unblock the helper's fifos
        if not helper.is_alive():
            break
        for fifo, flags in ((ready, os.O_WRONLY), (gate, os.O_RDONLY)):
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, flags | os.O_NONBLOCK))
        helper.join(0.1)
    assert failures == []
    result.assert_outcomes(passed=3)
