"""REAL PROCESSES: what an unauthenticated peer can cost the exporter (issue 12 #1).

A handshake deadline counted from the accept (bytes trickled in do not extend it), caps on
connections per peer address and overall (refusals logged), a small receive buffer until the
Hello is accepted, and memory and descriptors given back when such peers go.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.exporter import LabCerts, init_lab_certs
from tether.wire import Connection, GoAway, Role
from tether.wire._frames import FrameDecoder

from ._wire_kit import (
    SAFETY,
    TOKEN,
    Exporter,
    half_hello,
    legit_client,
    long_hello,
    tls_socket,
    trickle,
)
from ._wire_kit import context as _context


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> LabCerts:
    return init_lab_certs(tmp_path_factory.mktemp("certs"))


def _closed_by_server(sock: socket.socket) -> bool:
    """Read until the server closes; True if it did within the safety time-out."""
    sock.settimeout(SAFETY)
    try:
        while sock.recv(1 << 16):
            pass
    except TimeoutError:
        return False
    except OSError:  # reset
        return True
    return True


def _client_hello(certs: LabCerts) -> bytes:
    """The first flight of a real TLS handshake (a ClientHello of a few hundred bytes)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = _context(certs).wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


@pytest.fixture
def exporter(tmp_path: Path, certs: LabCerts) -> Iterator[Exporter]:
    limits = "{handshake_timeout: 1.5, max_connections_per_peer: 20, max_connections: 60}"
    process = Exporter(tmp_path, certs, limits=limits)
    yield process
    process.close()


def test_a_trickling_peer_is_dropped_at_the_deadline_counted_from_accept(
    exporter: Exporter, certs: LabCerts
) -> None:
    baseline_fds = exporter.fds()
    # Half in the TLS handshake (raw TCP, one byte), half past TLS but with no Hello.
    raw = [socket.create_connection(("127.0.0.1", exporter.port), SAFETY) for _ in range(5)]
    tls: list[socket.socket] = [tls_socket(exporter) for _ in range(5)]
    stop = threading.Event()
    feeds = [(sock, _client_hello(certs)) for sock in raw]
    feeds += [(sock, long_hello()) for sock in tls]
    trickler = threading.Thread(target=trickle, args=(feeds, stop, 0.2), daemon=True)
    trickler.start()
    try:
        for sock in tls:  # the TLS ones get a GOAWAY first
            decoder = FrameDecoder(1 << 16)
            sock.settimeout(SAFETY)
            while (frame := decoder.next_frame()) is None:
                data = sock.recv(1 << 16)
                assert data, "closed without a word"
                decoder.feed(data)
            assert isinstance(frame[0], GoAway) and frame[0].code == "handshake_timeout"
        for sock in raw:
            assert _closed_by_server(sock)
    finally:
        stop.set()
        trickler.join(SAFETY)
        for sock in raw + tls:
            sock.close()
    _, tree = legit_client(exporter)
    assert tree.children["power"].call("status") in (True, False)
    assert exporter.fds() <= baseline_fds + 2  # the legit one (and its session's)


def test_one_address_cannot_take_every_connection(tmp_path: Path, certs: LabCerts) -> None:
    limits = "{handshake_timeout: 30, max_connections_per_peer: 20, max_connections: 60}"
    exporter = Exporter(tmp_path, certs, limits=limits)
    hogs = [socket.create_connection(("127.0.0.1", exporter.port), SAFETY) for _ in range(40)]
    served: list[socket.socket] = []
    try:
        # The refused ones are closed at the accept, before any TLS: wait for 20 EOFs.
        refused: set[socket.socket] = set()
        while len(refused) < 20:
            readable, _, _ = select.select([s for s in hogs if s not in refused], [], [], SAFETY)
            assert readable, f"only {len(refused)} refused"
            for sock in readable:
                with contextlib.suppress(OSError):
                    assert sock.recv(1) == b""
                refused.add(sock)
        # Another address is served while the first holds its 20.
        connection, tree = legit_client(exporter, source="127.0.0.2")
        assert tree.children["power"].call("status") in (True, False)
        connection.close()
        # And the 20 admitted are real connections: each completes TLS and its Hello.
        context = _context(certs)
        for sock in hogs:
            if sock not in refused:
                wrapped = context.wrap_socket(sock, server_hostname="localhost")
                conn = Connection(Role.CLIENT)
                wrapped.sendall(conn.send(conn.hello(token=TOKEN)))
                assert wrapped.recv(1 << 16)  # the server's Hello
                served.append(wrapped)
        # They still count once authenticated: a 21st from 127.0.0.1 is refused.
        extra = socket.create_connection(("127.0.0.1", exporter.port), SAFETY)
        hogs.append(extra)
        assert select.select([extra], [], [], SAFETY)[0] and extra.recv(1) == b""
    finally:
        for sock in [*served, *hogs]:
            sock.close()
        exporter.close()
    assert "max_per_peer 20" in exporter.log_text()  # the refusal was logged


def test_unauthenticated_peers_cost_little_and_give_it_back(
    tmp_path: Path, certs: LabCerts
) -> None:
    limits = "{handshake_timeout: 3, max_connections_per_peer: 400, max_connections: 450}"
    exporter = Exporter(tmp_path, certs, limits=limits)
    try:
        connection, tree = legit_client(exporter)
        tree.children["power"].call("status")
        connection.close()
        before = exporter.rss_mb()
        peers = []
        for _ in range(300):  # past TLS, half a Hello each: the state before authentication
            sock = tls_socket(exporter)
            sock.sendall(half_hello())
            peers.append(sock)
        connection, tree = legit_client(exporter)  # served meanwhile
        assert tree.children["power"].call("status") in (True, False)
        connection.close()
        held = exporter.rss_mb() - before
        assert held < 40, f"300 unauthenticated peers hold {held:.0f} MB"
        for sock in peers:  # the deadline drops every one of them
            assert _closed_by_server(sock)
            sock.close()
        connection, tree = legit_client(exporter)
        assert tree.children["power"].call("status") in (True, False)
        connection.close()
        assert exporter.rss_mb() - before < 30
    finally:
        exporter.close()
