"""Labels are data: reported labels are validated, and only the admin's decide access."""

from __future__ import annotations

import json

import httpx

from tether.controller import make_policy
from tether.controller.testing import ControllerHandle


def post(http: httpx.Client, path: str, body: object) -> httpx.Response:
    """POST ``body`` as JSON with non-ASCII escaped (a lone surrogate as ``\\ud800``)."""
    data = json.dumps(body, ensure_ascii=True)
    return http.post(path, content=data, headers={"content-type": "application/json"})


def register(ctl: ControllerHandle, token: str, labels: object) -> httpx.Response:
    with ctl.http(token) as http:
        return post(http, "/v1/exporter/register", {"labels": labels, "report": None})


def test_bad_reported_labels_are_refused_and_the_lab_listing_keeps_working(
    ctl: ControllerHandle,
) -> None:
    exporter = ctl.admin.create_exporter("bench-1", {"site": "lab-a"})
    alice = ctl.admin.create_client("alice")
    bad: list[object] = [
        {"k": "\ud800"},
        {"k": "a\x1b]0;title\x07"},
        {"k": "[bold red]x"},
        {"k" * 129: "v"},
        {"k": "v" * 257},
        {f"k{i}": "v" for i in range(65)},
        {"k": 1},
    ]
    for labels in bad:
        answer = register(ctl, exporter.token, labels)
        assert answer.status_code == 422, (labels, answer.text)
        assert answer.json()["error"] == "invalid_request"
    assert register(ctl, exporter.token, {"board": "rpi4"}).status_code == 200
    with ctl.http(alice.token) as http:
        listed = http.get("/v1/exporters")
        assert listed.status_code == 200
        assert listed.json()["exporters"][0]["labels"] == {"board": "rpi4", "site": "lab-a"}


def test_a_bad_selector_is_a_422_not_a_500(ctl: ControllerHandle) -> None:
    alice = ctl.admin.create_client("alice")
    with ctl.http(alice.token) as http:
        for selector in ("k=\ud800", "k=\x1b", "a" * 5000, "k in (", "\ud800"):
            answer = post(http, "/v1/leases", {"selector": selector, "duration": 60})
            assert answer.status_code == 422, (selector, answer.text)
            assert answer.json()["error"] in ("bad_selector", "invalid_request")
        answer = http.get("/v1/exporters", params={"selector": "k=\x00"})
        assert answer.status_code == 422


def test_policies_match_only_the_labels_the_admin_gave(ctl: ControllerHandle) -> None:
    liar = ctl.admin.create_exporter("liar", {"site": "lab-b"})
    honest = ctl.admin.create_exporter("honest", {"board": "rpi4"})
    alice = ctl.admin.create_client("alice")
    ctl.admin.set_policy(
        make_policy(
            name="rpi", clients=["alice"], selector="board=rpi4", priority=0, max_duration="1h"
        )
    )
    assert register(ctl, liar.token, {"board": "rpi4"}).status_code == 200
    with ctl.http(alice.token) as http:
        # The reported label is shown and a lease selector may match it...
        shown = http.get("/v1/exporters", params={"selector": "board=rpi4"}).json()
        assert {e["name"] for e in shown["exporters"]} == {"liar", "honest"}
        # ...but the policy does not cover the liar, so it is never granted to alice.
        answer = http.post("/v1/leases", json={"exporter": "liar", "duration": 60})
        assert answer.status_code == 201
        assert answer.json()["state"] == "unsatisfiable", answer.json()
        assert "policy" in answer.json()["reason"]
        assert register(ctl, honest.token, {}).status_code == 200
        granted = http.post("/v1/leases", json={"selector": "board=rpi4", "duration": 60})
        assert granted.json()["exporters"] == ["honest"], granted.json()
