"""Schemathesis against the controller's own OpenAPI document, with client and exporter
tokens: a bounded number of generated requests per operation (valid and invalid ones), and not
one server error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tether.controller.testing import run_controller

_EXAMPLES = 8


def test_generated_requests_get_no_server_error(tmp_path: Path) -> None:
    with run_controller(tmp_path, tls=False) as ctl:
        client = ctl.admin.create_client("fuzz").token
        exporter = ctl.admin.create_exporter("bench-1", {"board": "rpi4"}).token
        with ctl.http(exporter) as http:
            assert http.post("/v1/exporter/register", json={}).status_code == 200
        raw = httpx.get(f"{ctl.url}/openapi.json").json()
        # The document describes what the parsers accept.
        lease = raw["components"]["schemas"]["LeaseRequest"]["properties"]
        assert "KEY in (V1, V2)" in str(lease["selector"])
        assert "largest to smallest" in str(lease["duration"])
        schema = schemathesis.openapi.from_dict(raw)
        failures: list[str] = []
        operations = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            token = exporter if operation.path.startswith("/v1/exporter") else client
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(operation, mode, ctl.url, token, failures)
        assert operations >= 10
        assert failures == [], "\n".join(failures[:10])


def _fuzz(operation: Any, mode: GenerationMode, url: str, token: str, failures: list[str]) -> None:
    @settings(
        max_examples=_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def run(case: Any) -> None:
        if isinstance(case.query, dict) and isinstance(case.query.get("wait"), int | float):
            case.query["wait"] = 0  # a long-poll would hold the test for a minute
        response = case.call(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        if response.status_code >= 500:
            failures.append(
                f"{operation.label} ({mode.value}): {response.status_code} {response.text[:200]}"
                f"\n  {case.as_curl_command()}"
            )

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid (an operation without parameters or body).
        assert mode is GenerationMode.NEGATIVE, operation.label
