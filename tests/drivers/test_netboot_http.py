"""HttpServer against curl (real sockets on 127.0.0.1)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tether.drivers.netboot import HttpServer
from tether.drivers.netboot._http import parse_range
from tether.testing import serve

DATA = os.urandom(100_000)


@pytest.fixture
def http() -> Iterator[tuple[Any, str]]:
    driver = HttpServer(host="127.0.0.1", port=0)
    with serve(driver) as client:
        client.put_bytes("boot/kernel", DATA)
        yield client, driver.store.root


def curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", *args], capture_output=True, timeout=30
    )


def test_get_and_head(http: tuple[Any, str]) -> None:
    client, _ = http
    url = client.address() + "boot/kernel"
    assert curl(url).stdout == DATA
    head = curl("-I", url).stdout.decode()
    assert head.startswith("HTTP/1.1 200") and f"Content-Length: {len(DATA)}" in head
    assert "Accept-Ranges: bytes" in head


@pytest.mark.parametrize(
    ("spec", "first", "last"), [("10-19", 10, 19), ("99990-", 99990, 99999), ("-5", 99995, 99999)]
)
def test_ranges(http: tuple[Any, str], spec: str, first: int, last: int) -> None:
    client, _ = http
    done = curl("-i", "-r", spec, client.address() + "boot/kernel")
    head, _, body = done.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 206")
    assert f"Content-Range: bytes {first}-{last}/{len(DATA)}".encode() in head
    assert body == DATA[first : last + 1]


def test_unsatisfiable_range_and_missing_files(http: tuple[Any, str]) -> None:
    client, root = http
    base = client.address()
    assert (
        curl("-o", "/dev/null", "-w", "%{http_code}", "-r", "200000-", base + "boot/kernel").stdout
        == b"416"
    )
    assert curl("-o", "/dev/null", "-w", "%{http_code}", base + "nothing").stdout == b"404"
    Path(root, "out").symlink_to("/etc/passwd")
    assert curl("-o", "/dev/null", "-w", "%{http_code}", base + "out").stdout == b"403"
    assert (
        curl("-o", "/dev/null", "-w", "%{http_code}", base + "%2e%2e/%2e%2e/etc/passwd").stdout
        == b"403"
    )
    assert curl("-X", "PUT", "-o", "/dev/null", "-w", "%{http_code}", base + "x").stdout == b"405"
    assert curl(base + "boot/kernel").stdout == DATA  # still serving


def test_garbage_gets_400_and_keeps_serving(http: tuple[Any, str]) -> None:
    client, _ = http
    host, port = client.address().removeprefix("http://").rstrip("/").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"NONSENSE\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    assert curl(client.address() + "boot/kernel").stdout == DATA


def test_keep_alive_serves_several_requests(http: tuple[Any, str]) -> None:
    client, _ = http
    url = client.address() + "boot/kernel"
    done = curl("-o", "/dev/null", "-o", "/dev/null", "-w", "%{num_connects}\n", url, url)
    assert done.stdout.split() == [b"1", b"0"]  # the second request reused the connection


def test_parse_range() -> None:
    assert parse_range("bytes=0-0", 10) == (0, 0)
    assert parse_range("bytes=5-100", 10) == (5, 9)
    assert parse_range("bytes=-100", 10) == (0, 9)
    assert parse_range("bytes=1-2,4-5", 10) is None
    with pytest.raises(ValueError):
        parse_range("bytes=10-", 10)
