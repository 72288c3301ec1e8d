"""The demo shop in a real browser: Playwright driving Debian's Chromium (headless) against
``flask run`` in a subprocess, with sessions in a temporary SQLite file.

Needs ``pip install playwright`` (the test extra) and ``apt-get install chromium``; never
``playwright install`` (no downloaded browser). Under CI=true a missing one fails the run,
elsewhere these tests are skipped.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.demo_server import CHROMIUM, DemoServer
from tests.services import cannot_test, need_module

need_module("playwright")
from playwright.sync_api import Browser, Locator, Page, sync_playwright  # noqa: E402

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        cannot_test(f"the browser tests need Chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    with DemoServer(tmp_path_factory.mktemp("shop") / "sessions.sqlite3") as server:
        yield server


def new_page(browser: Browser, shop: DemoServer, **options: Any) -> Page:
    context = browser.new_context(base_url=shop.url, **options)
    return context.new_page()


def log_in(page: Page, password: str = "demo", remember: bool = False,
           here: bool = False) -> None:
    """Log in as demo, on the login page already open (``here``) or a fresh one."""
    if not here:
        page.goto("/login")
    page.get_by_label("Username").fill("demo")
    page.get_by_label("Password").fill(password)
    if remember:
        page.get_by_label("Remember me").check()
    click(page, page.get_by_role("button", name="Log in"))


def click(page: Page, target: Locator) -> None:
    """Click ``target`` and wait for the page it leads to."""
    with page.expect_navigation():
        target.click()


def cart(page: Page, base: str = "") -> dict[str, int]:
    """The cart page (of the server at ``base``, else the page's) as product name -> quantity."""
    page.goto(f"{base}/cart")
    quantities = {}
    for row in page.locator("table tbody tr").all():
        name = row.locator("td[data-label=Product]").inner_text()
        quantities[name] = int(row.locator("td[data-label=Quantity]").inner_text())
    return quantities


def session_cookie(page: Page) -> dict[str, Any]:
    [cookie] = [c for c in page.context.cookies() if c["name"] == "session"]
    return dict(cookie)


def test_log_in_after_being_sent_to_login(browser: Browser, shop: DemoServer) -> None:
    page = new_page(browser, shop)
    page.goto("/students")
    assert re.search(r"/login\?next=/students$", page.url)
    assert "Please log in to see that page." in page.locator(".flashes").inner_text()
    log_in(page, here=True)
    assert page.url.endswith("/students")
    assert "Welcome, demo!" in page.locator(".flashes").inner_text()
    assert page.get_by_role("cell", name="Grace Hopper").is_visible()
    click(page, page.get_by_role("button", name="Log out"))
    assert "You have been logged out." in page.locator(".flashes").inner_text()
    assert page.get_by_role("banner").get_by_role("link", name="Log in").is_visible()
    page.context.close()


def test_wrong_password(browser: Browser, shop: DemoServer) -> None:
    page = new_page(browser, shop)
    log_in(page, password="not-demo")
    assert page.locator("p.error").inner_text() == "Wrong username or password."
    assert page.get_by_label("Username").input_value() == "demo"
    assert "Logged in as" not in page.locator("header").inner_text()
    page.context.close()


def test_two_tabs_add_at_once_and_both_count(browser: Browser, shop: DemoServer) -> None:
    first = new_page(browser, shop)
    log_in(first)
    second = first.context.new_page()
    for tab in (first, second):
        tab.goto("/products")
    # Submit both forms before either response is back.
    with first.expect_navigation(), second.expect_navigation():
        for tab, product in ((first, "pencil"), (second, "notebook")):
            tab.evaluate("p => document.querySelector(`form[action='/cart/add/${p}']`).submit()",
                         product)
    assert cart(first) == {"Pencil": 1, "Notebook": 1}
    assert "Cart (2)" in first.locator("nav").inner_text()
    first.context.close()


def test_eight_parallel_adds_are_all_counted(browser: Browser, shop: DemoServer) -> None:
    page = new_page(browser, shop)
    log_in(page)
    page.goto("/products")
    statuses = page.evaluate("""() => Promise.all(Array.from({length: 8}, () =>
        fetch('/cart/add/eraser', {method: 'POST', redirect: 'manual'})
            .then(r => r.type === 'opaqueredirect' ? 302 : r.status)))""")
    assert statuses == [302] * 8
    assert cart(page) == {"Eraser": 8}
    assert "takes this session's lock" in page.locator("#lock-note").inner_text()
    page.context.close()


def test_sign_out_another_browser(browser: Browser, tmp_path: Path) -> None:
    with DemoServer(tmp_path / "sessions.sqlite3") as shop:  # no other test's sessions
        sign_out_another_browser(browser, shop)


def sign_out_another_browser(browser: Browser, shop: DemoServer) -> None:
    laptop = new_page(browser, shop, user_agent="LaptopBrowser/1.0")
    phone = new_page(browser, shop, user_agent="PhoneBrowser/2.0")
    log_in(laptop)
    log_in(phone)
    laptop.goto("/account/sessions")
    rows = laptop.locator("#sessions tbody tr")
    assert rows.count() == 2
    mine = laptop.locator("#sessions tr.current")
    assert "LaptopBrowser/1.0" in mine.inner_text() and "this device" in mine.inner_text()
    click(laptop, rows.filter(has_text="PhoneBrowser/2.0").get_by_role("button", name="Sign out"))
    assert "Signed out that session." in laptop.locator(".flashes").inner_text()
    assert laptop.locator("#sessions tbody tr").count() == 1

    click(phone, phone.get_by_role("link", name="Students"))  # its next click
    assert "/login" in phone.url
    assert "Please log in to see that page." in phone.locator(".flashes").inner_text()
    click(laptop, laptop.get_by_role("link", name="Students"))
    assert laptop.url.endswith("/students")
    laptop.context.close()
    phone.context.close()


def test_session_survives_a_restart_on_sqlite(browser: Browser, tmp_path: Path) -> None:
    with DemoServer(tmp_path / "sessions.sqlite3") as server:
        page = new_page(browser, server)
        log_in(page)
        page.goto("/products")
        click(page, page.locator("form[action='/cart/add/ruler'] button"))
        server.stop()
        server.start()  # a new process on the same file and key (on another port: cookies
        # are per host, not per port, so the browser sends the same cookie)
        assert cart(page, server.url) == {"Ruler (30 cm)": 1}
        assert "Logged in as demo" in page.locator("header").inner_text()
        page.context.close()


@pytest.mark.parametrize("remember", [True, False])
def test_remember_me_and_the_cookie_lifetime(browser: Browser, shop: DemoServer,
                                             remember: bool) -> None:
    page = new_page(browser, shop)
    log_in(page, remember=remember)
    assert "Logged in as demo" in page.locator("header").inner_text()
    cookie = session_cookie(page)
    if remember:
        assert cookie["expires"] > 0  # a persistent cookie: survives closing the browser
    else:
        assert cookie["expires"] == -1  # a browser-session cookie
    page.context.close()


@pytest.mark.parametrize("path", ["/products", "/cart", "/account/sessions", "/students"])
def test_pages_fit_a_390_px_phone(browser: Browser, shop: DemoServer, path: str) -> None:
    page = new_page(browser, shop, viewport=PHONE)
    log_in(page)
    for product in ("backpack", "ruler", "notebook"):
        page.goto("/products")
        click(page, page.locator(f"form[action='/cart/add/{product}'] button"))
    page.goto(path)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{path} is {width} px wide on a 390 px phone"
    page.context.close()
