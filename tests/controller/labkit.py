"""Helpers the controller tests share: an exporter that is online, a lease request.

(Fixtures — ``ctl``, ``clock``, the ``alice``, ``bob`` and ``root`` clients — are in
``conftest.py``; these are plain functions a test calls.)
"""

from __future__ import annotations

from typing import Any

import httpx

from tether.controller.testing import ControllerHandle


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
