"""REAL PROCESSES: a client that sends and never reads cannot grow the exporter (issue 12 #3),
and an error about a huge argument stays small (issue 12 #5).

Each flood is bounded in count and time; meanwhile a real client keeps being served, and the
exporter's peak RSS (``VmHWM``) stays within a bound of its value before the flood.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.errors import InvalidArgument
from tether.exporter import LabCerts, init_lab_certs
from tether.wire import GoAway, Result

from ._wire_kit import SAFETY, Exporter, RawPeer, legit_client, ping_flood, unread_calls


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> LabCerts:
    return init_lab_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def exporter(tmp_path: Path, certs: LabCerts) -> Iterator[Exporter]:
    process = Exporter(tmp_path, certs, limits="{max_backlog: 8388608}")  # 8 MiB
    yield process
    process.close()


class Served:
    """A real client calling in a loop on its own thread until stopped; counts its answers."""

    def __init__(self, exporter: Exporter) -> None:
        self.connection, self.tree = legit_client(exporter)
        self.answers = 0
        self.failure: BaseException | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                assert self.tree.children["power"].call("status") in (True, False)
                self.answers += 1
        except BaseException as exc:
            self.failure = exc

    def finish(self) -> int:
        self.stop.set()
        self.thread.join(SAFETY)
        assert not self.thread.is_alive(), "the real client hung"
        self.connection.close()
        assert self.failure is None, self.failure
        return self.answers


def _warm_up(exporter: Exporter) -> float:
    connection, tree = legit_client(exporter)
    for _ in range(50):
        tree.children["power"].call("status")
        tree.children["blob"].call("blob", 1000 << 10)
    connection.close()
    return exporter.peak_mb()


def test_a_ping_flood_is_dropped_and_costs_nothing(exporter: Exporter) -> None:
    before = _warm_up(exporter)
    served = Served(exporter)
    peer = RawPeer(exporter, source="127.0.0.3")
    started = time.monotonic()
    sent = ping_flood(peer, 3_000_000, 8.0)  # bounded in count and in time
    flooded = time.monotonic() - started
    peer.close()
    # Dropped at its 101st PING in a second: the sends fail long before the flood's bounds.
    assert sent < 3_000_000 and flooded < 8.0, (sent, flooded)
    assert "PINGs a second: dropping it" in exporter.log_text()
    # Its address is refused for a while (closed at the accept: no TLS, no session)...
    with pytest.raises((OSError, ssl.SSLError)):
        RawPeer(exporter, source="127.0.0.3")
    assert "127.0.0.3 flooded a connection" in exporter.log_text()
    # ...while everyone else is served.
    connection, tree = legit_client(exporter)
    assert tree.children["power"].call("status") in (True, False)
    connection.close()
    answers = served.finish()
    assert answers > 0
    growth = exporter.peak_mb() - before
    assert growth < 15, f"{sent} pings grew the exporter by {growth:.0f} MB"
    assert exporter.process.poll() is None


def test_results_nobody_reads_end_in_goaway_not_in_memory(exporter: Exporter) -> None:
    before = _warm_up(exporter)
    served = Served(exporter)
    peer = RawPeer(exporter)
    unread_calls(peer, 300, 1000 << 10)  # 300 MiB asked
    # The server drops us once 8 MiB wait unread: reading now sees at most that, then GOAWAY.
    peer.sock.settimeout(SAFETY)
    events = peer.drain()
    answers = served.finish()
    results = [event for event in events if isinstance(event, Result)]
    assert isinstance(events[-1], GoAway) and events[-1].code == "backlog", events[-1:]
    assert len(results) < 100
    assert answers > 0
    growth = exporter.peak_mb() - before
    assert growth < 150, f"unread results grew the exporter by {growth:.0f} MB"
    _, tree = legit_client(exporter)
    assert tree.children["blob"].call("blob", 10) == bytes(10)  # still serving


def test_an_error_about_a_huge_argument_is_small_and_answered(exporter: Exporter) -> None:
    connection, tree = legit_client(exporter)
    log_before = len(exporter.log_text())
    try:
        for _ in range(3):
            with pytest.raises(InvalidArgument) as info:
                tree.children["power"].call("cycle", b"\0" * 300_000)
            assert len(str(info.value)) < 1000  # the value's repr is cut where it is made
            assert "... [300000 bytes]" in str(info.value)
        assert tree.children["power"].call("status") in (True, False)
    finally:
        connection.close()
    assert len(exporter.log_text()) - log_before < 20_000
