"""The demo shop (examples/shop) behaves as a user of it would expect."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from examples.shop.app import STUDENTS, create_app
from tests.services import POSTGRES_URL, REDIS_URL, postgres_store, redis_client

CONFIG = {"SATCHEL_STORE": "memory://", "SECRET_KEY": "x" * 32, "TESTING": True}


@pytest.fixture(params=["memory://", "cookie://"])
def app(request: pytest.FixtureRequest) -> Flask:
    return create_app({**CONFIG, "SATCHEL_STORE": request.param})


def client_side(app: Flask) -> bool:
    return app.config["SATCHEL_STORE"] == "cookie://"


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def session_set_cookie(response) -> SimpleCookie:
    """The ``session`` morsel of the response's Set-Cookie headers (asserts there is one)."""
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith("session=")]
    assert len(headers) == 1, headers
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(headers[0])
    return cookie


def cookie_value(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("session")
    return None if cookie is None else cookie.value


def log_in(client: FlaskClient, remember: bool = False, **extra):
    data = {"username": "demo", "password": "demo", **extra}
    if remember:
        data["remember"] = "on"
    return client.post("/login", data=data)


def logged_in_as_demo(client: FlaskClient) -> bool:
    return "Logged in as <strong>demo</strong>" in client.get("/").text


def rows(page: str) -> list[list[str]]:
    """The body rows of the page's tables, each as its cells' text."""
    found = []
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S):
        cells = [" ".join(re.sub(r"<[^>]+>", " ", cell).split())
                 for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if cells:
            found.append(cells)
    return found


def cart(client: FlaskClient) -> dict[str, int]:
    """The cart page as product name -> quantity."""
    return {cells[0]: int(cells[1]) for cells in rows(client.get("/cart").text)}


# -- login / logout -------------------------------------------------------------


def test_login_page_shows_demo_credentials(client: FlaskClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    assert "<code>demo</code>" in page.text


def test_login_success(client: FlaskClient) -> None:
    response = log_in(client)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    home = client.get("/")
    assert "Welcome, demo!" in home.text
    assert logged_in_as_demo(client)


def test_login_wrong_password(client: FlaskClient) -> None:
    response = client.post("/login", data={"username": "demo", "password": "nope"})
    assert response.status_code == 401
    assert "Wrong username or password." in response.text
    assert not logged_in_as_demo(client)
    assert client.get("/students").status_code == 302


@pytest.mark.parametrize("data", [{}, {"username": "demo"}, {"password": "demo"},
                                  {"username": "  ", "password": "demo"}])
def test_login_missing_fields_is_an_error_message(client: FlaskClient, data) -> None:
    response = client.post("/login", data=data)
    assert response.status_code == 400
    assert "Please enter both a username and a password." in response.text
    assert not logged_in_as_demo(client)


def test_login_follows_next_but_only_to_local_paths(client: FlaskClient) -> None:
    assert log_in(client, next="/students").headers["Location"] == "/students"
    assert log_in(client, next="https://evil.example/").headers["Location"] == "/"
    assert log_in(client, next="//evil.example/").headers["Location"] == "/"


def test_logout_ends_the_session(client: FlaskClient, app: Flask) -> None:
    old_cookie = session_set_cookie(log_in(client))["session"].value
    client.post("/cart/add/notebook")
    assert logged_in_as_demo(client)

    response = client.post("/logout", follow_redirects=True)
    assert "You have been logged out." in response.text
    assert "Logged in as" not in response.text
    assert not logged_in_as_demo(client)

    if client_side(app):
        return  # a sealed cookie cannot be revoked before its deadline (documented)
    # Someone who kept a copy of the pre-logout cookie gets nothing from it.
    replay = app.test_client()
    replay.set_cookie("session", old_cookie)
    assert not logged_in_as_demo(replay)
    assert "Your cart is empty." in replay.get("/cart").text
    assert replay.get("/students").status_code == 302


def test_logout_requires_post(client: FlaskClient) -> None:
    log_in(client)
    assert client.get("/logout").status_code == 405
    assert logged_in_as_demo(client)


def test_login_rotates_the_session_id(client: FlaskClient, app: Flask) -> None:
    # an anonymous session with a cookie
    before = session_set_cookie(client.post("/cart/add/pencil"))["session"].value
    after = session_set_cookie(log_in(client))["session"].value
    assert after.split(".")[0] != before.split(".")[0]
    assert logged_in_as_demo(client)

    # The pre-login id is dead: a planted (fixated) cookie does not become logged in.
    attacker = app.test_client()
    attacker.set_cookie("session", before)
    assert not logged_in_as_demo(attacker)


# -- remember me ----------------------------------------------------------------------


def test_remember_me_makes_the_cookie_permanent(client: FlaskClient) -> None:
    cookie = session_set_cookie(log_in(client, remember=True))
    assert cookie["session"]["expires"]
    assert logged_in_as_demo(client)


def test_without_remember_me_the_cookie_ends_with_the_browser(client: FlaskClient) -> None:
    cookie = session_set_cookie(log_in(client))
    assert not cookie["session"]["expires"]
    assert not cookie["session"]["max-age"]


def test_session_cookie_flags(client: FlaskClient) -> None:
    cookie = session_set_cookie(log_in(client))["session"]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"


# -- students --------------------------------------------------------------------------


def test_students_redirects_anonymous_users_to_login(client: FlaskClient) -> None:
    response = client.get("/students")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/students"
    assert STUDENTS[0][0] not in client.get("/login?next=/students").text


def test_students_listed_when_logged_in(client: FlaskClient) -> None:
    log_in(client)
    page = client.get("/students")
    assert page.status_code == 200
    for name, grade in STUDENTS:
        assert [name, grade] in rows(page.text)


# -- cart ---------------------------------------------------------------------------------


def test_cart_add_remove_clear_persists_across_requests(client: FlaskClient) -> None:
    assert "Your cart is empty." in client.get("/cart").text

    client.post("/cart/add/pencil")
    client.post("/cart/add/pencil")
    client.post("/cart/add/notebook", data={"quantity": "3"})
    page = client.get("/cart").text
    assert "Cart (5)" in page
    assert cart(client) == {"Pencil": 2, "Notebook": 3}
    assert "Total: <strong>$15.90</strong>" in page  # 2 x $1.20 + 3 x $4.50
    assert "Your cart holds 5 items." in client.get("/").text

    response = client.post("/cart/remove/pencil", follow_redirects=True)
    assert "Removed Pencil from your cart." in response.text
    assert cart(client) == {"Notebook": 3}
    assert "Total: <strong>$13.50</strong>" in client.get("/cart").text

    response = client.post("/cart/clear", follow_redirects=True)
    assert "Your cart is empty now." in response.text
    assert "Your cart is empty." in client.get("/cart").text
    assert "Your cart holds 0 items." in client.get("/").text


def test_cart_belongs_to_one_browser(client: FlaskClient, app: Flask) -> None:
    client.post("/cart/add/backpack")
    other = app.test_client()
    assert "Your cart is empty." in other.get("/cart").text
    assert cart(client) == {"Backpack": 1}


def test_unknown_product_is_404(client: FlaskClient) -> None:
    assert client.post("/cart/add/unicorn").status_code == 404
    assert client.post("/cart/remove/unicorn").status_code == 404
    assert "Your cart is empty." in client.get("/cart").text


@pytest.mark.parametrize("quantity", ["0", "-1", "abc", "100", "1.5"])
def test_bad_quantity_is_an_error_message(client: FlaskClient, quantity: str) -> None:
    response = client.post("/cart/add/eraser", data={"quantity": quantity},
                           follow_redirects=True)
    assert response.status_code == 200
    assert "Quantity must be a whole number from 1 to 99." in response.text
    assert "Your cart is empty." in client.get("/cart").text


def test_removing_what_is_not_in_the_cart(client: FlaskClient) -> None:
    response = client.post("/cart/remove/ruler", follow_redirects=True)
    assert response.status_code == 200
    assert "Ruler (30 cm) was not in your cart." in response.text


def test_cart_is_emptied_by_login(client: FlaskClient) -> None:
    client.post("/cart/add/pencil")
    log_in(client)
    assert "Your cart holds 0 items." in client.get("/").text


def test_cart_kept_while_logged_in(client: FlaskClient) -> None:
    log_in(client)
    client.post("/cart/add/ruler")
    assert cart(client) == {"Ruler (30 cm)": 1}
    assert logged_in_as_demo(client)


# -- the default SQLite store ----------------------------------------------------------------


def test_cart_survives_on_sqlite_store_across_app_instances(tmp_path: Path) -> None:
    config = {**CONFIG, "SATCHEL_STORE": "sqlite:///" + str(tmp_path / "s.sqlite3")}
    first = create_app(config)
    client = first.test_client()
    log_in(client)
    client.post("/cart/add/eraser", data={"quantity": "2"})
    cookie = cookie_value(client)
    assert cookie is not None
    assert (tmp_path / "s.sqlite3").exists()

    # A restarted server (a new app on the same file) still knows the browser.
    second = create_app(config)
    browser = second.test_client()
    browser.set_cookie("session", cookie)
    assert cart(browser) == {"Eraser": 2}
    assert logged_in_as_demo(browser)


def test_default_store_is_sqlite_in_the_instance_folder() -> None:
    from satchel import Satchel, SQLiteStore

    app = create_app({"SECRET_KEY": "x" * 32, "TESTING": True})
    store = Satchel.store_of(app)
    assert isinstance(store, SQLiteStore)
    assert Path(store.path) == Path(app.instance_path) / "sessions.sqlite3"
    assert Path(app.instance_path) == Path(__file__).parent.parent / "examples/shop/instance"


def test_demo_runs_on_sealed_cookies_with_one_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_SATCHEL_STORE", "cookie://")
    app = create_app({"SECRET_KEY": "x" * 32, "TESTING": True})
    client = app.test_client()
    log_in(client)
    client.post("/cart/add/ruler")
    assert cart(client) == {"Ruler (30 cm)": 1}
    cookie = cookie_value(client)
    assert cookie is not None and "ruler" not in cookie and "demo" not in cookie


@pytest.mark.parametrize("shared", ["redis", "postgresql"])
def test_demo_runs_on_a_shared_store_with_one_setting(
    shared: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The README's `FLASK_SATCHEL_STORE=redis://… make demo` (and postgresql://): two app
    instances, as two app servers would be, share one logged-in session."""
    if shared == "redis":
        with redis_client():  # the test server is up, or cannot_test says why
            url = REDIS_URL
    else:
        with postgres_store() as store:
            url = POSTGRES_URL
            with store.pool.connection() as conn:  # the demo's default table: drop it after,
                table_was_there = conn.execute(  # unless it was there before
                    "SELECT to_regclass('satchel_sessions')").fetchone() != (None,)
        if not table_was_there:
            request.addfinalizer(lambda: _drop_table(url, "satchel_sessions"))
    monkeypatch.setenv("FLASK_SATCHEL_STORE", url)
    config = {"SECRET_KEY": "x" * 32, "TESTING": True}
    first, second = create_app(config), create_app(config)
    browser = first.test_client()
    log_in(browser)
    browser.post("/cart/add/ruler")
    other_server = second.test_client()
    other_server.set_cookie("session", cookie_value(browser) or "")
    assert cart(other_server) == {"Ruler (30 cm)": 1}
    assert logged_in_as_demo(other_server)
    other_server.post("/logout")  # deletes the stored session
    assert not logged_in_as_demo(browser)
    assert "logged out" in other_server.get("/").text.lower()  # the flash's session ends too


def _drop_table(url: str, table: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(table)))
