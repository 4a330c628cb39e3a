"""The web dashboard in headless Chromium (Debian's, driven by Playwright) against a real
controller over TLS: sign-in, live updates without reload, admin actions, CSRF, escaping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from labkit import lease_as, online
from playwright.sync_api import Browser, Page, sync_playwright

from tether.controller.testing import ControllerHandle, run_controller

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def ctl(tmp_path: Path) -> Iterator[ControllerHandle]:
    with run_controller(tmp_path, heartbeat_interval=5, heartbeat_timeout=60) as handle:
        yield handle


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # The lab CA is not in the browser's store: trust this controller's certificate here.
    context = browser.new_context(ignore_https_errors=True)
    yield context.new_page()
    context.close()


def sign_in(page: Page, ctl: ControllerHandle, token: str) -> None:
    # The identities made so far are noticed now, not by an upkeep round while the page is
    # open (an identity change makes the page fetch its whole body once).
    ctl.notice_admin_changes()
    page.goto(ctl.url + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#exporters")
    page.wait_for_selector("#live:text('live')")  # the event stream is open


def test_sign_in_keeps_the_token_in_a_strict_httponly_cookie(
    ctl: ControllerHandle, page: Page
) -> None:
    alice = ctl.admin.create_client("alice")
    page.goto(ctl.url + "/")
    page.fill("input[name=token]", "tth_wrong")
    page.click("button[type=submit]")
    assert "not a client or admin token" in page.inner_text("[role=alert]")
    sign_in(page, ctl, alice.token)
    (cookie,) = page.context.cookies()
    assert cookie["value"] == alice.token
    assert (cookie["httpOnly"], cookie["secure"], cookie["sameSite"]) == (True, True, "Strict")
    assert alice.token not in page.url
    assert page.evaluate("document.cookie") == ""  # scripts cannot read it
    assert "client alice" in page.inner_text("header")
    assert page.query_selector("button[data-maintenance-on]") is None  # no admin actions


def test_an_exporter_token_cannot_sign_in(ctl: ControllerHandle, page: Page) -> None:
    exporter = ctl.admin.create_exporter("bench-1", {})
    page.goto(ctl.url + "/login")
    page.fill("input[name=token]", exporter.token)
    page.click("button[type=submit]")
    assert page.query_selector("[role=alert]") is not None
    assert page.context.cookies() == []


def test_a_grant_shows_up_on_an_open_page_without_reload(ctl: ControllerHandle, page: Page) -> None:
    online(ctl, "bench-1", {"board": "rpi4"})
    alice = ctl.admin.create_client("alice")
    sign_in(page, ctl, ctl.admin.create_admin("root").token)
    page.evaluate("window.notReloaded = true")
    granted = lease_as(ctl, alice.token, selector="board=rpi4")
    row = page.wait_for_selector(f"[data-lease='{granted['id']}']")
    assert row is not None and "alice" in row.inner_text()
    waiting = lease_as(ctl, alice.token, selector="board=rpi4")
    page.wait_for_selector(f"[data-queued='{waiting['id']}']")
    assert page.inner_text("#queue-total") == "1"
    status = page.inner_text("[data-exporter='bench-1'] .status")
    assert status == "leased"
    assert page.evaluate("window.notReloaded") is True


def test_an_admin_ends_a_lease_and_takes_an_exporter_out_of_the_pool(
    ctl: ControllerHandle, page: Page
) -> None:
    online(ctl, "bench-1", {"board": "rpi4"})
    alice = ctl.admin.create_client("alice")
    held = lease_as(ctl, alice.token, selector="board=rpi4")
    sign_in(page, ctl, ctl.admin.create_admin("root").token)
    page.click(f"[data-lease='{held['id']}'] button[data-end]")
    page.wait_for_selector(f"[data-recent='{held['id']}']")
    with ctl.http(alice.token) as http:
        ended = http.get(f"/v1/leases/{held['id']}").json()
    assert ended["state"] == "ended" and ended["reason"].startswith("ended by root")

    page.fill("[data-exporter='bench-1'] input[name=reason]", "<b>reflash</b>")
    page.click("button[data-maintenance-on='bench-1']")
    page.wait_for_selector("[data-exporter='bench-1'] .status-maintenance")
    # The reason is shown as text, never as markup.
    assert "<b>reflash</b>" in page.inner_text("[data-exporter='bench-1']")
    assert page.query_selector("[data-exporter='bench-1'] b") is None
    page.click("button[data-maintenance-off='bench-1']")
    page.wait_for_selector("[data-exporter='bench-1'] .status-available")

    page.goto(f"{ctl.url}/leases/{held['id']}")
    history = page.inner_text("main")
    assert "grant" in history and "end_lease" in history and "root" in history


def test_admin_forms_refuse_a_post_without_the_csrf_field(ctl: ControllerHandle) -> None:
    online(ctl, "bench-1", {})
    root = ctl.admin.create_admin("root")
    with ctl.http() as http:
        http.cookies.set("tether_session", root.token)
        refused = http.post("/admin/exporters/bench-1/maintenance", data={"on": "on"})
        assert refused.status_code == 403
        assert "stale or came from another site" in refused.json()["message"]
        anonymous = httpx.post(
            ctl.url + "/admin/exporters/bench-1/maintenance",
            data={"on": "on"},
            verify=False,
        )
        assert anonymous.status_code == 401
    with ctl.http(root.token) as http:
        shown = http.get("/v1/exporters").json()["exporters"][0]
    assert shown["status"] == "available"


def test_a_change_swaps_only_the_changed_rows(ctl: ControllerHandle, page: Page) -> None:
    online(ctl, "bench-1", {"board": "rpi4"})
    online(ctl, "bench-2", {"board": "imx8"})
    alice, bob = ctl.admin.create_client("alice"), ctl.admin.create_client("bob")
    first = lease_as(ctl, bob.token, selector="board=rpi4")
    sign_in(page, ctl, ctl.admin.create_admin("root").token)
    page.wait_for_selector("#lab[data-refreshed]", state="attached")  # the catch-up fetch is in
    fetched: list[str] = []
    page.on("request", lambda request: fetched.append(request.url))
    # Mark the rows that must survive: a swapped-in row would not carry the mark.
    page.evaluate(
        "for (const row of document.querySelectorAll('tr[data-exporter], tr[data-lease]'))"
        " row.survivor = true"
    )
    waiting = [lease_as(ctl, alice.token, selector="board=rpi4") for _ in range(2)]
    page.wait_for_selector(f"[data-queued='{waiting[1]['id']}']")
    assert page.inner_text("#queue-total") == "2"

    with ctl.http(bob.token) as http:  # the head of the queue is granted bench-1
        assert http.delete(f"/v1/leases/{first['id']}").status_code == 200
    page.wait_for_selector(f"[data-lease='{waiting[0]['id']}']")
    page.wait_for_selector(f"[data-recent='{first['id']}']")
    assert page.query_selector(f"[data-queued='{waiting[0]['id']}']") is None
    assert page.inner_text(f"[data-queued='{waiting[1]['id']}'] td") == "1"  # moved up
    assert page.inner_text("#queue-total") == "1"
    assert page.query_selector(f"[data-lease='{first['id']}']") is None
    assert "alice" in page.inner_text("[data-exporter='bench-1']")
    # Nothing was fetched again: the rows came in the events, and only the changed ones.
    assert not [url for url in fetched if "/fragments/" in url], fetched
    survivors = page.evaluate(
        "Array.from(document.querySelectorAll('tr[data-exporter]'))"
        ".map(row => [row.dataset.exporter, row.survivor === true])"
    )
    assert survivors == [["bench-1", False], ["bench-2", True]]


def test_the_queue_says_why_a_request_waits_on_maintenance(
    ctl: ControllerHandle, page: Page
) -> None:
    online(ctl, "bench-1", {"board": "rpi4"})
    sign_in(page, ctl, ctl.admin.create_admin("root").token)
    page.fill("[data-exporter='bench-1'] input[name=reason]", "reflash")
    page.click("button[data-maintenance-on='bench-1']")
    page.wait_for_selector("[data-exporter='bench-1'] .status-maintenance")
    waiting = lease_as(ctl, ctl.admin.create_client("alice").token, selector="board=rpi4")
    why = page.wait_for_selector(f"[data-queued='{waiting['id']}'] .why")
    assert why is not None
    assert why.inner_text() == (
        "waiting: the only matching exporter is in maintenance: bench-1 (reflash)"
    )
    page.click("button[data-maintenance-off='bench-1']")  # back: the request is granted
    page.wait_for_selector(f"[data-lease='{waiting['id']}']")
    assert page.query_selector(f"[data-queued='{waiting['id']}']") is None


def test_a_reason_being_typed_survives_a_live_update_of_its_row(
    ctl: ControllerHandle, page: Page
) -> None:
    online(ctl, "bench-1", {"board": "rpi4"})
    alice = ctl.admin.create_client("alice")
    sign_in(page, ctl, ctl.admin.create_admin("root").token)
    page.wait_for_selector("#lab[data-refreshed]", state="attached")
    page.fill("[data-exporter='bench-1'] input[name=reason]", "reflash")
    page.evaluate("document.querySelector(\"tr[data-exporter='bench-1']\").old = true")
    lease_as(ctl, alice.token, selector="board=rpi4")  # bench-1's row changes: its holder
    page.wait_for_function(
        "() => { const row = document.querySelector(\"tr[data-exporter='bench-1']\");"
        " return row && !row.old && row.innerText.includes('alice'); }"
    )
    assert page.input_value("[data-exporter='bench-1'] input[name=reason]") == "reflash"


def test_admin_buttons_share_one_form_and_work_without_script(
    ctl: ControllerHandle, browser: Browser
) -> None:
    for name, board in (("bench-1", "rpi4"), ("bench-2", "imx8"), ("bench-3", "imx8")):
        online(ctl, name, {"board": board})
    alice = ctl.admin.create_client("alice")
    held = lease_as(ctl, alice.token, selector="board=rpi4")
    lease_as(ctl, alice.token, selector="board=rpi4")  # waits in the queue, with an End button
    root = ctl.admin.create_admin("root")
    context = browser.new_context(ignore_https_errors=True, java_script_enabled=False)
    context.add_cookies(
        [{"name": "tether_session", "value": root.token, "url": ctl.url, "secure": True}]
    )
    page = context.new_page()
    page.goto(ctl.url + "/")
    # The page's forms: the admin buttons' one (#act) and "Sign out", however many rows.
    assert page.eval_on_selector_all("form", "forms => forms.map(f => f.id)") == ["", "act"]
    assert len(page.query_selector_all("button[form=act]")) == 3 + 2
    page.click("button[data-maintenance-on='bench-2']")
    page.wait_for_selector("[data-exporter='bench-2'] .status-maintenance")
    assert "set by root from the dashboard" in page.inner_text("[data-exporter='bench-2']")
    page.click(f"[data-lease='{held['id']}'] button[data-end]")
    page.wait_for_selector(f"[data-recent='{held['id']}']")
    context.close()
