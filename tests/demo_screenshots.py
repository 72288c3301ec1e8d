"""Screenshots of the demo shop for the README: ``python -m tests.demo_screenshots``.

Runs the demo (tests/demo_server.py) on a temporary SQLite file, logs in from a phone
(390 px wide) and a desktop browser, fills the cart, and writes the cart and "Your sessions"
pages at both widths to docs/screenshots/ (or the folder given as the first argument).
Needs playwright and Debian's Chromium (/usr/bin/chromium), as the browser tests do.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from tests.demo_server import CHROMIUM, ROOT, DemoServer

DEVICES = {
    "phone": {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2,
              "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/156.0 Mobile"},
    "desktop": {"viewport": {"width": 1100, "height": 760},
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0"},
}
CART = {"notebook": 2, "pencil": 3, "backpack": 1}


def log_in_and_fill(browser: Browser, url: str, device: str) -> Page:
    page = browser.new_context(base_url=url, **DEVICES[device]).new_page()  # type: ignore[arg-type]
    page.goto("/login")
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill("demo")
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    for product, quantity in CART.items():
        page.request.post(f"/cart/add/{product}", form={"quantity": str(quantity)})
    return page


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp, DemoServer(Path(tmp) / "sessions.sqlite3") as shop, \
            sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        pages = {device: log_in_and_fill(browser, shop.url, device) for device in DEVICES}
        for device, page in pages.items():
            for name, path in (("cart", "/cart"), ("sessions", "/account/sessions")):
                page.goto(path)
                target = out / f"{name}-{device}.png"
                page.screenshot(path=str(target), full_page=True)
                print(target.relative_to(ROOT) if target.is_relative_to(ROOT) else target)
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
