"""The demo shop's pages beyond the shop itself: "Your sessions", error pages, the footer,
and the cart's lock (Flask test client; tests/test_demo_browser.py drives a real browser)."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from examples.shop.app import create_app, satchel
from tests.test_demo import CONFIG, cart, log_in, logged_in_as_demo, rows


def server(store: str = "memory://") -> Flask:
    return create_app({**CONFIG, "SATCHEL_STORE": store})


def browser(app: Flask, agent: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["HTTP_USER_AGENT"] = agent
    return client


def sessions_page(client: FlaskClient) -> list[list[str]]:
    page = client.get("/account/sessions")
    assert page.status_code == 200
    return rows(page.text)


def handles_on_page(client: FlaskClient) -> list[str]:
    return re.findall(r'name="handle" value="([^"]+)"', client.get("/account/sessions").text)


# -- login required -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/students", "/account/sessions"])
def test_anonymous_visit_is_sent_to_login_with_a_reason(path: str) -> None:
    client = server().test_client()
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/login?next={path}"
    assert "Please log in to see that page." in client.get(response.headers["Location"]).text
    assert "Please log in" not in client.get("/").text  # shown once


# -- Your sessions ------------------------------------------------------------------------


def test_sessions_page_lists_each_device_and_marks_this_one() -> None:
    app = server()
    laptop, phone = browser(app, "LaptopBrowser/1.0"), browser(app, "PhoneBrowser/2.0")
    log_in(laptop)
    log_in(phone)
    listed = sessions_page(laptop)
    assert len(listed) == 2
    by_device = {cells[0].split(" (")[0]: cells for cells in listed}
    assert set(by_device) == {"LaptopBrowser/1.0", "PhoneBrowser/2.0"}
    assert by_device["LaptopBrowser/1.0"][3] == "this device"
    assert by_device["PhoneBrowser/2.0"][3] == "Sign out"
    assert all(cells[1].endswith(" UTC") and cells[2].endswith(" UTC") for cells in listed)
    assert len(handles_on_page(laptop)) == 1  # a button for the other device only


def test_signing_out_another_device_logs_it_out_and_keeps_this_one() -> None:
    app = server()
    laptop, phone = browser(app, "Laptop"), browser(app, "Phone")
    log_in(laptop)
    log_in(phone)
    [phone_handle] = handles_on_page(laptop)
    page = laptop.post("/account/sessions/revoke", data={"handle": phone_handle},
                       follow_redirects=True)
    assert "Signed out that session." in page.text
    assert len(rows(page.text)) == 1
    assert not logged_in_as_demo(phone)
    assert phone.get("/students").status_code == 302
    assert logged_in_as_demo(laptop)


def test_sign_out_all_other_devices() -> None:
    app = server()
    devices = [browser(app, f"Device {n}") for n in range(3)]
    for device in devices:
        log_in(device)
    page = devices[0].post("/account/sessions/revoke-others", follow_redirects=True)
    assert "Signed out 2 other sessions." in page.text
    assert [cells[0].split(" (")[0] for cells in rows(page.text)] == ["Device 0"]
    assert logged_in_as_demo(devices[0])
    assert not logged_in_as_demo(devices[1]) and not logged_in_as_demo(devices[2])


def test_a_handle_of_someone_elses_session_is_refused() -> None:
    app = server()
    mallory = app.test_client()
    with mallory.session_transaction() as session:
        session["user"] = "mallory"
    mallory_handle = satchel.sessions_of("mallory", app=app)[0].handle
    demo = app.test_client()
    log_in(demo)
    for handle in (mallory_handle, "A" * 64, ""):
        page = demo.post("/account/sessions/revoke", data={"handle": handle},
                         follow_redirects=True)
        assert "That session is not one of yours, or it has ended already." in page.text
    assert len(satchel.sessions_of("mallory", app=app)) == 1
    assert logged_in_as_demo(demo)


def test_this_device_is_not_signed_out_by_the_per_session_button() -> None:
    app = server()
    demo = app.test_client()
    log_in(demo)
    [mine] = satchel.sessions_of("demo", app=app)
    page = demo.post("/account/sessions/revoke", data={"handle": mine.handle},
                     follow_redirects=True)
    assert "That is this device: use Log out." in page.text
    assert logged_in_as_demo(demo)


def test_sessions_page_in_cookie_mode_explains_and_signs_nothing_out() -> None:
    demo = server("cookie://").test_client()
    log_in(demo)
    page = demo.get("/account/sessions").text
    assert "each session lives in its browser" in page
    assert rows(page) == []
    for path in ("/account/sessions/revoke", "/account/sessions/revoke-others"):
        response = demo.post(path, data={"handle": "A" * 64}, follow_redirects=True)
        assert response.status_code == 200
        assert "cannot be signed out one by one" in response.text
    assert logged_in_as_demo(demo)


# -- footer and start-up log ----------------------------------------------------------------


@pytest.mark.parametrize(("store", "says"), [
    ("memory://", "server-side: the cookie holds only a signed random id; data in memory"),
    ("sqlite:///{tmp}/s.sqlite3", "server-side: the cookie holds only a signed random id; data"
                                  " in SQLite (s.sqlite3)"),
    ("cookie://", "client-side: the whole session is sealed in the cookie"),
])
def test_footer_and_start_up_log_name_the_mode_and_store(
    store: str, says: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="examples.shop.app"):
        app = server(store.format(tmp=tmp_path))
    footer = app.test_client().get("/").text.split("<footer>")[1]
    assert f"Sessions by satchel, {says}" in footer
    assert ("signed random id" in footer) != (store == "cookie://")
    logged = [r.getMessage() for r in caplog.records if r.name == "examples.shop.app"]
    assert len(logged) == 1 and says.split(": ", 1)[1] in logged[0]


# -- error pages ---------------------------------------------------------------------------


def test_404_is_a_styled_page() -> None:
    client = server().test_client()
    for response in (client.get("/no/such/page"), client.post("/cart/add/unicorn")):
        assert response.status_code == 404
        assert "Page not found" in response.text
        assert "shop.css" in response.text and "<footer>" in response.text


def test_store_down_is_a_styled_503(tmp_path: Path) -> None:
    working = server().test_client()
    log_in(working)
    # The same browser, served by an app whose store's folder is missing (not mounted yet).
    down = server(f"sqlite:///{tmp_path}/missing/s.sqlite3").test_client()
    cookie = working.get_cookie("session")
    assert cookie is not None
    down.set_cookie("session", cookie.value)
    for path in ("/", "/cart", "/account/sessions"):
        response = down.get(path)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert "Back in a moment" in response.text and "shop.css" in response.text


# -- the cart under the session lock ---------------------------------------------------------


def test_cart_views_lock_the_session_only_when_server_side() -> None:
    locked, unlocked = server(), server("cookie://")  # cookie mode: no ConfigError at start
    for view in ("cart_add", "cart_remove", "cart_clear"):
        assert hasattr(locked.view_functions[view], "satchel_lock")
        assert not hasattr(unlocked.view_functions[view], "satchel_lock")
    log_in(client := locked.test_client())
    assert "takes this session's lock" in client.get("/cart").text
    log_in(client := unlocked.test_client())
    assert "adds from several tabs at once can lose items" in client.get("/cart").text


def test_parallel_adds_are_all_counted(tmp_path: Path) -> None:
    app = server(f"sqlite:///{tmp_path}/s.sqlite3")
    first = app.test_client()
    log_in(first)
    cookie = first.get_cookie("session")
    assert cookie is not None
    tabs = []
    for _ in range(8):
        tab = app.test_client()
        tab.set_cookie("session", cookie.value)
        tabs.append(tab)
    start = threading.Barrier(len(tabs))
    statuses: list[int] = []

    def add(tab: FlaskClient) -> None:
        start.wait()
        statuses.append(tab.post("/cart/add/pencil").status_code)

    threads = [threading.Thread(target=add, args=(tab,)) for tab in tabs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [302] * 8
    assert cart(first) == {"Pencil": 8}
