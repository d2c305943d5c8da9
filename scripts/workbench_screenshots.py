#!/usr/bin/env python
"""Screenshots of the running product for the README (docs/img/).

Inbox, ticket page (two agents: collision detection), the whole ticket page with every
panel and the supervisor dashboard in the light and dark themes. Usage: start the product
(`make run`), then
    .venv/bin/python scripts/workbench_screenshots.py http://127.0.0.1:8000 [user] [password]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OUT = Path(__file__).resolve().parent.parent / "docs" / "img"
SHOTS = ("inbox.png", "ticket.png", "ticket-panels.png", "dashboard.png", "dashboard-dark.png")


def main() -> None:
    base = sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8000"
    username = sys.argv[2] if len(sys.argv) > 2 else "supervisor"
    password = sys.argv[3] if len(sys.argv) > 3 else "demo-password-123"
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1360, "height": 820})
        page.goto(f"{base}/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.goto(f"{base}/?view=all")
        page.wait_for_selector("#live-status[data-state=live]")
        page.screenshot(path=str(OUT / "inbox.png"))
        # A second agent on the same ticket shows collision detection.
        other = browser.new_page(viewport={"width": 1000, "height": 700})
        other.goto(f"{base}/accounts/login/")
        other.fill("#id_username", "agent1")
        other.fill("#id_password", password)
        other.click("button[type=submit]")
        other.goto(f"{base}/?view=mine&status=open")
        other.click("tr.ticket-row a.subject >> nth=0")
        other.wait_for_selector("#live-status[data-state=live]")
        page.goto(other.url)
        page.wait_for_selector("#live-status[data-state=live]")
        other.click("#composer-body")
        other.keyboard.type("Let me check")
        page.wait_for_selector("#presence span", timeout=5000)
        page.screenshot(path=str(OUT / "ticket.png"))
        other.close()
        # The whole page: customer context, AI routing, knowledge base, the reply box.
        page.reload()
        page.wait_for_selector("#live-status[data-state=live]")
        page.screenshot(path=str(OUT / "ticket-panels.png"), full_page=True)
        # The supervisor dashboard, in the light and the dark theme (prefers-color-scheme).
        themes: tuple[tuple[Literal["light", "dark"], str], ...] = (
            ("light", "dashboard.png"),
            ("dark", "dashboard-dark.png"),
        )
        for scheme, name in themes:
            page.emulate_media(color_scheme=scheme)
            page.set_viewport_size({"width": 1360, "height": 1500})
            page.goto(f"{base}/dashboard/?range=30d")
            page.wait_for_selector("#live-status[data-state=live]")
            page.screenshot(path=str(OUT / name), full_page=True)
        browser.close()
    print(f"wrote {', '.join(str(OUT / n) for n in SHOTS)}")


if __name__ == "__main__":
    main()
