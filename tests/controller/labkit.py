"""Helpers the controller tests share: an exporter that is online, a lease request, the
``tether`` command as a process.

(Fixtures — ``ctl``, ``clock``, the ``alice``, ``bob`` and ``root`` clients — are in
``conftest.py``; these are plain functions a test calls.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx

from tether.controller.testing import ControllerHandle

MOCK_POWER = """
export:
  power: {type: tether.drivers.power.MockPower}
"""
"""An exporter config's ``export:`` part: one ``MockPower`` named power."""


def online(ctl: ControllerHandle, name: str, labels: dict[str, str]) -> httpx.Client:
    """Create an exporter and register it; returns its HTTP client (for heartbeats)."""
    exporter = ctl.admin.create_exporter(name, labels)
    http = ctl.http(exporter.token)
    assert http.post("/v1/exporter/register", json={"report": {"nodes": []}}).status_code == 200
    return http


def lease(http: httpx.Client, **body: Any) -> dict[str, Any]:
    """Ask for a lease (10 minutes unless ``duration`` says); the lease object."""
    body.setdefault("duration", "10m")
    answer = http.post("/v1/leases", json=body)
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def lease_as(ctl: ControllerHandle, token: str, **body: Any) -> dict[str, Any]:
    """:func:`lease` with the client of ``token``."""
    with ctl.http(token) as http:
        return lease(http, **body)


def tether_process(*args: str) -> subprocess.Popen[str]:
    """``tether ARGS...`` as a child process (pipes for stdout and stderr, text), with no
    ``TETHER_*`` variable of this environment."""
    return subprocess.Popen(
        [sys.executable, "-c", "from tether.cli import main; main()", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("TETHER_")},
    )
