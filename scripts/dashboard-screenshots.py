"""Take the screenshots in docs/dashboard.md: a small lab on a real controller, in Chromium.

    .venv/bin/python scripts/dashboard-screenshots.py docs/images
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tether.controller.testing import run_controller


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, run_controller(tmp) as ctl:
        boards = {
            "rpi4-01": {"board": "rpi4", "site": "lab-a"},
            "rpi4-02": {"board": "rpi4", "site": "lab-a"},
            "imx8-01": {"board": "imx8", "site": "lab-a"},
            "imx8-02": {"board": "imx8", "site": "lab-b"},
            "qemu-x86": {"board": "qemu", "site": "lab-b"},
        }
        tokens = {}
        for name, labels in boards.items():
            tokens[name] = ctl.admin.create_exporter(name, labels).token
            with ctl.http(tokens[name]) as http:
                http.post("/v1/exporter/register", json={"report": {}})
        with ctl.http(tokens["imx8-02"]) as http:
            http.post("/v1/exporter/health", json={"ok": False, "output": "no U-Boot prompt"})
        root = ctl.admin.create_admin("root")
        with ctl.http(root.token) as http:
            http.post(
                "/v1/admin/exporters/qemu-x86/maintenance",
                json={"on": True, "reason": "new firmware"},
            )
        leases = []
        for client, selector in [("ci-1", "board=rpi4"), ("alice", "board=imx8"),
                                 ("ci-2", "board=rpi4"), ("bob", "board=rpi4"),
                                 ("ci-3", "board=imx8")]:
            token = ctl.admin.create_client(client).token
            with ctl.http(token) as http:
                leases.append(http.post("/v1/leases", json={"selector": selector, "duration": "1h"}).json())
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(ctl.url + "/login")
            page.screenshot(path=str(out / "dashboard-login.png"))
            page.fill("input[name=token]", root.token)
            page.click("button[type=submit]")
            page.wait_for_selector("#live:text('live')")
            page.screenshot(path=str(out / "dashboard-overview.png"), full_page=True)
            page.goto(f"{ctl.url}/leases/{leases[0]['id']}")
            page.screenshot(path=str(out / "dashboard-lease.png"), full_page=True)
            browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images"))
