"""Controller, before authentication: bodies, slow headers, connection floods, failed logins.

Each test floods a real controller (TLS, SQLite, loopback) within bounded counts and time, and
checks that a legitimate client is served meanwhile and memory stays bounded.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.controller import Limits
from tether.controller.testing import ControllerHandle, run_controller

from ._util import raw_connect, rss_bytes

_MB = 1024 * 1024


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[ControllerHandle]:
    limits = Limits(
        header_timeout=2.0,
        body_timeout=3.0,
        max_connections=300,
        max_connections_per_peer=250,
        auth_failures_burst=20,
        auth_failures_per_second=1.0,
        auth_tarpit=0.05,
    )
    with run_controller(tmp_path, limits=limits) as handle:
        yield handle


def _head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_a_huge_body_is_refused_before_it_is_read(ctl: ControllerHandle) -> None:
    alice = ctl.admin.create_client("alice")
    before = rss_bytes()
    for token in (None, "not-a-token", alice.token):
        sock = raw_connect(ctl.url, ctl.ca)
        with sock:
            auth = f"Authorization: Bearer {token}\r\n" if token else ""
            # Headers only: the answer comes without the server waiting for any of the body.
            sock.sendall(
                (
                    "POST /v1/leases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"{auth}Content-Length: 1000000000\r\n\r\n"
                ).encode()
            )
            head = _head(sock)
        status = int(head.split()[1])
        assert status == (413 if token == alice.token else 401), head
    # A chunked body with no declared length is cut at the limit too.
    with ctl.http(alice.token) as http:

        def chunks() -> Iterator[bytes]:
            for _ in range(2000):  # would be 128 MB
                yield b" " * 65536

        answer = http.post("/v1/leases", content=chunks(), headers={"content-type": "x"})
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"] == "too_large"
        assert http.get("/v1/whoami").json() == {"kind": "client", "name": "alice"}
    assert rss_bytes() - before < 100 * _MB


def test_half_sent_headers_neither_lock_out_nor_outlive_the_header_timeout(
    ctl: ControllerHandle,
) -> None:
    alice = ctl.admin.create_client("alice")
    slow: list[socket.socket] = []
    try:
        for _ in range(400):  # more than the caps: the oldest idle ones make room
            sock = raw_connect(ctl.url, ctl.ca)
            sock.sendall(b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)
        # A real client is served at once (an idle half-sent connection made room for it).
        with ctl.http(alice.token) as http:
            assert http.get("/v1/whoami").status_code == 200
        # Every half-sent request is dropped (by its header deadline, or to make room).
        for sock in slow:
            sock.settimeout(15)
            with contextlib.suppress(OSError):
                assert sock.recv(1024) == b""
    finally:
        for sock in slow:
            sock.close()


def test_trickled_headers_do_not_reset_the_deadline(ctl: ControllerHandle) -> None:
    request = b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 200
    sock = raw_connect(ctl.url, ctl.ca)
    closed = threading.Event()
    sent = [0]

    def trickle() -> None:
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                sent[0] += 1
                if closed.wait(0.1):
                    return
        except OSError:
            return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    sock.settimeout(30)
    try:
        data = sock.recv(1024)
    except OSError:
        data = b""
    closed.set()
    thread.join(5)
    sock.close()
    assert data == b""
    # One byte every 0.1 s needs 25 s for the whole; the 2 s deadline from the first byte cut
    # it long before.
    assert sent[0] < len(request)


def test_failed_authentications_are_throttled_but_known_tokens_pass(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A budget of 20 that does not refill within the test, however slow the machine runs it;
    # a short tarpit (the default second, 40 times over, would be the test's whole time).
    limits = Limits(auth_failures_burst=20, auth_failures_per_second=1e-6, auth_tarpit=0.05)
    with run_controller(tmp_path, limits=limits) as ctl:
        _throttled_but_known_tokens_pass(ctl, limits)
    assert any("failed authentication" in r.getMessage() for r in caplog.records)


def _throttled_but_known_tokens_pass(ctl: ControllerHandle, limits: Limits) -> None:
    alice = ctl.admin.create_client("alice")
    with ctl.http(alice.token) as good, ctl.http("wrong") as bad:
        assert good.get("/v1/whoami").status_code == 200
        codes = [bad.get("/v1/whoami").status_code for _ in range(60)]
        assert codes[:20] == [401] * 20
        assert codes[-1] == 429
        start = time.monotonic()
        assert bad.get("/v1/whoami").headers.get("retry-after")
        assert time.monotonic() - start >= limits.auth_tarpit  # the 429 waited in the tarpit
        # The real client's known token still passes from the same address.
        assert good.get("/v1/whoami").status_code == 200


def test_a_body_that_never_arrives_times_out_and_others_are_served(
    ctl: ControllerHandle,
) -> None:
    alice = ctl.admin.create_client("alice")
    sock = raw_connect(ctl.url, ctl.ca)
    with sock:
        sock.sendall(
            (
                "POST /v1/leases HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {alice.token}\r\nContent-Length: 100\r\n\r\n{{"
            ).encode()
        )
        with ctl.http(alice.token) as http:
            assert http.get("/v1/whoami").status_code == 200
        sock.settimeout(15)
        head = _head(sock)
    assert int(head.split()[1]) == 408, head
