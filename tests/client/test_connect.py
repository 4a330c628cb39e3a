"""``tether.connect``: URLs, the tree as a context manager, and reconnecting to the same session
after a network cut (a real TCP proxy between client and exporter, cut on purpose)."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "exporter"))

from procs import Notifications

import tether
from tether.client import RemoteClient, split_session_url
from tether.errors import ConfigError, ConnectFailed, ConnectionLost, SessionLost
from tether.exporter import parse_config, run_exporter_in_thread


class CuttableProxy:
    """Forwards TCP connections to ``target``; :meth:`cut` breaks every current one."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.links: list[socket.socket] = []
        self.frozen: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.links += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                if src not in self.frozen:
                    dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        with self.lock:
            links, self.links = self.links, []
        for sock in links:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def freeze(self) -> None:
        """Silently drop everything on the current links, as a dead network would."""
        with self.lock:
            self.frozen.update(self.links)

    def close(self) -> None:
        self.listener.close()
        self.cut()


@pytest.fixture
def notes(tmp_path: Path) -> Iterator[Notifications]:
    listener = Notifications(tmp_path / "notes.sock")
    yield listener
    listener.close()


def lab(notes: Notifications, grace: float) -> str:
    return (
        f"name: lab\nsession_grace: {grace}\nexport:\n"
        f"  marker: {{type: lab_drivers.Marker, config: {{notify: {notes.path}}}}}\n"
    )


def test_new_calls_reconnect_to_the_same_session_after_a_network_cut(
    notes: Notifications,
) -> None:
    config = parse_config(lab(notes, 30))
    with run_exporter_in_thread(config, listen="tcp://127.0.0.1:0") as running:
        port = int(running.url.rsplit(":", 1)[1])
        proxy = CuttableProxy(("127.0.0.1", port))
        try:
            dut = tether.connect(f"tcp://127.0.0.1:{proxy.port}")
            assert dut.marker.call("increment") == 1
            outcome: list[BaseException] = []

            def hang() -> None:
                try:
                    dut.marker.call("hang")
                except BaseException as exc:
                    outcome.append(exc)

            caller = threading.Thread(target=hang)
            caller.start()
            assert notes.wait_for("marker hanging") == ["marker started"]
            proxy.cut()
            caller.join(10)
            assert len(outcome) == 1 and isinstance(outcome[0], ConnectionLost)
            # The exporter kept the session: the next call reconnects into the same tree.
            assert dut.marker.call("increment") == 2
            assert len(running.exporter.sessions) == 1
            dut.close()
        finally:
            proxy.close()


def test_a_silent_network_fails_the_call_within_keepalive_then_reconnects(
    notes: Notifications,
) -> None:
    config = parse_config(lab(notes, 30))
    with run_exporter_in_thread(config, listen="tcp://127.0.0.1:0") as running:
        port = int(running.url.rsplit(":", 1)[1])
        proxy = CuttableProxy(("127.0.0.1", port))
        try:
            dut = tether.connect(f"tcp://127.0.0.1:{proxy.port}", keepalive=1.0)
            assert dut.marker.call("increment") == 1
            proxy.freeze()
            started = time.monotonic()
            with pytest.raises(ConnectionLost):
                dut.marker.call("increment")
            assert time.monotonic() - started < 3  # keepalive 1 s, never a hang
            # The call may have run before the answer was lost; the session is the same.
            assert dut.marker.call("increment") in (2, 3)
            dut.close()
        finally:
            proxy.close()


def test_a_call_after_the_session_ended_fails_instead_of_starting_afresh(
    notes: Notifications,
) -> None:
    config = parse_config(lab(notes, 0))
    with run_exporter_in_thread(config, listen="tcp://127.0.0.1:0") as running:
        port = int(running.url.rsplit(":", 1)[1])
        proxy = CuttableProxy(("127.0.0.1", port))
        try:
            dut = tether.connect(f"tcp://127.0.0.1:{proxy.port}")
            assert dut.marker.call("increment") == 1
            proxy.cut()
            assert notes.wait_for("marker stopped") == ["marker started"]
            with pytest.raises(ConnectionLost):
                dut.marker.call("increment")  # notices the cut, or fails to reconnect
            with pytest.raises(SessionLost, match="session is gone"):
                dut.marker.call("increment")
            dialled = len(proxy.links)
            for _ in range(5):  # known now: every later call fails at once, connecting nowhere
                with pytest.raises(SessionLost, match="session is gone"):
                    dut.marker.call("increment")
            assert len(proxy.links) == dialled
            dut.close()
        finally:
            proxy.close()


def test_the_tree_is_a_context_manager_that_closes_the_connection(
    notes: Notifications,
) -> None:
    with run_exporter_in_thread(parse_config(lab(notes, 0))) as running:
        with tether.connect(running.url) as dut:
            assert isinstance(dut, RemoteClient)
            assert dut.marker.call("increment") == 1
        with pytest.raises(ConnectionLost, match="closed"):
            dut.marker.call("increment")
        assert notes.wait_for("marker stopped") == ["marker started"]


def test_session_urls_split_and_bad_urls_are_config_errors(tmp_path: Path) -> None:
    assert split_session_url("unix:///run/x.sock?session=abc") == ("unix:///run/x.sock", "abc")
    assert split_session_url("tls://h:1") == ("tls://h:1", None)
    with pytest.raises(ConfigError, match="unknown URL parameter"):
        tether.connect("unix:///run/x.sock?sesion=abc")
    with pytest.raises(ConfigError, match="unknown scheme 'http'"):
        tether.connect("http://localhost:7443")
    with pytest.raises(ConnectFailed, match="cannot connect"):
        tether.connect(f"unix://{tmp_path}/nobody.sock")
