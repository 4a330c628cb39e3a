"""Helpers for hostile-load tests: raw sockets against a real controller, memory readings."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path


def rss_bytes() -> int:
    """This process's resident set size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def raw_connect(url: str, ca: Path | None, timeout: float = 10.0) -> socket.socket:
    """A raw (TLS when ``url`` is https) socket to the controller at ``url``."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    if url.startswith("https"):
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        return context.wrap_socket(sock, server_hostname=host)
    return sock
