"""Client-side mode through Flask: what a browser and an attacker holding cookies can observe."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import flask
import pytest
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient
from markupsafe import Markup

from satchel import Satchel, SealedCookies, SessionTooLarge
from satchel.errors import CodecError
from tests.clock import FakeClock

IDLE = 3600.0
ABSOLUTE = 8 * 3600.0
AppFactory = Callable[..., flask.Flask]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_app(clock: FakeClock) -> AppFactory:
    def make(store: Any = "cookie://", **config: Any) -> flask.Flask:
        app = flask.Flask(__name__)
        app.config.update(TESTING=True, SECRET_KEY="current secret key",
                          SATCHEL_IDLE_TIMEOUT=IDLE, SATCHEL_ABSOLUTE_TIMEOUT=ABSOLUTE)
        app.config.update(config)
        Satchel(app, store=store, clock=clock)

        @app.post("/set/<key>/<value>")
        def set_value(key: str, value: str) -> str:
            flask.session[key] = value
            return "ok"

        @app.post("/permanent")
        def make_permanent() -> str:
            flask.session.permanent = True
            return "ok"

        @app.get("/get/<key>")
        def get_value(key: str) -> str:
            return str(flask.session.get(key, "-"))

        @app.get("/dump")
        def dump() -> dict[str, Any]:
            return {key: repr(value) for key, value in flask.session.items()}

        @app.post("/cart/<item>")
        def add_to_cart(item: str) -> str:
            flask.session.setdefault("cart", []).append(item)
            return "ok"

        @app.post("/logout")
        def logout() -> str:
            flask.session.destroy()  # type: ignore[attr-defined]
            return "ok"

        @app.get("/untouched")
        def untouched() -> str:
            return "ok"

        return app

    return make


@pytest.fixture
def app(make_app: AppFactory) -> flask.Flask:
    return make_app()


@pytest.fixture
def client(app: flask.Flask) -> FlaskClient:
    return app.test_client()


def cookie_of(client: FlaskClient, name: str = "session") -> str | None:
    cookie = client.get_cookie(name)
    return None if cookie is None else cookie.value


def set_cookies(response: Any, name: str = "session") -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith(name + "=")]


def security_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "satchel.security"]


def test_data_lives_in_the_cookie_and_cannot_be_read_there(client: FlaskClient) -> None:
    client.post("/set/user/alice-in-wonderland")
    token = cookie_of(client)
    assert token is not None
    decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"alice" not in decoded and "alice" not in token
    assert client.get("/get/user").text == "alice-in-wonderland"


def test_no_store_is_involved(app: flask.Flask) -> None:
    with pytest.raises(RuntimeError, match="sealed in cookies"):
        Satchel.store_of(app)
    other = flask.Flask(__name__)
    other.config["SECRET_KEY"] = "k"
    Satchel(other, store=SealedCookies(compress=False))
    assert other.test_client().post("/nothing").status_code == 404


def test_nested_mutation_is_saved(client: FlaskClient) -> None:
    client.post("/cart/pen")
    client.post("/cart/ink")
    assert client.get("/get/cart").text == "['pen', 'ink']"


def test_read_only_request_sends_no_cookie(client: FlaskClient) -> None:
    client.post("/set/user/alice")
    response = client.get("/get/user")
    assert response.text == "alice"
    assert set_cookies(response) == []
    assert set_cookies(client.get("/untouched")) == []


# -- key rotation -----------------------------------------------------------------------------


def test_fallback_key_opens_old_cookie_and_reseals_it(make_app: AppFactory) -> None:
    old_app = make_app(SECRET_KEY="old secret key")
    browser = old_app.test_client()
    browser.post("/set/user/alice")
    old_token = cookie_of(browser)
    assert old_token is not None

    rotated = make_app(SECRET_KEY="new secret key", SECRET_KEY_FALLBACKS=["old secret key"])
    client = rotated.test_client()
    client.set_cookie("session", old_token)
    response = client.get("/get/user")
    assert response.text == "alice"
    assert len(set_cookies(response)) == 1  # re-sealed under the current key on this response
    new_token = cookie_of(client)
    assert new_token is not None and new_token != old_token

    only_new = make_app(SECRET_KEY="new secret key").test_client()
    only_new.set_cookie("session", new_token)
    assert only_new.get("/get/user").text == "alice"
    only_new.set_cookie("session", old_token)
    assert only_new.get("/get/user").text == "-"


def test_changing_the_secret_without_fallbacks_logs_everyone_out(
        make_app: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    browser = make_app(SECRET_KEY="one").test_client()
    browser.post("/set/user/alice")
    token = cookie_of(browser)
    assert token is not None
    client = make_app(SECRET_KEY="two").test_client()
    client.set_cookie("session", token)
    with caplog.at_level(logging.INFO, logger="satchel.security"):
        assert client.get("/get/user").text == "-"
    assert any("rejected session cookie" in line for line in security_lines(caplog))


# -- associated data: the cookie name is bound -------------------------------------------


def test_token_is_bound_to_its_cookie_name(make_app: AppFactory,
                                           caplog: pytest.LogCaptureFixture) -> None:
    shop = make_app(SESSION_COOKIE_NAME="shop_session")
    browser = shop.test_client()
    browser.post("/set/role/admin")
    token = cookie_of(browser, "shop_session")
    assert token is not None

    forum = make_app(SESSION_COOKIE_NAME="forum_session").test_client()
    forum.set_cookie("forum_session", token)
    with caplog.at_level(logging.INFO, logger="satchel.security"):
        assert forum.get("/get/role").text == "-"
    assert security_lines(caplog)
    assert all(token not in line for line in security_lines(caplog))


# -- expiry inside the payload -----------------------------------------------------------


def test_idle_timeout_ends_a_replayed_old_cookie(client: FlaskClient, clock: FakeClock,
                                                 app: flask.Flask) -> None:
    client.post("/set/user/alice")
    stale = cookie_of(client)
    assert stale is not None
    # The live browser keeps using its session; each change re-seals it.
    for _ in range(3):
        clock.advance(IDLE * 0.6)
        client.post("/set/seen/yes")
    assert client.get("/get/user").text == "alice"

    replay = app.test_client()
    replay.set_cookie("session", stale)
    assert replay.get("/get/user").text == "-"  # 1.8 idle periods since it was sealed


def test_read_only_use_slides_the_idle_deadline_by_touch(client: FlaskClient,
                                                        clock: FakeClock) -> None:
    client.post("/set/user/alice")
    clock.advance(IDLE / 20)  # under the touch threshold: nothing is re-sealed
    assert set_cookies(client.get("/get/user")) == []
    clock.advance(IDLE / 5)  # past it: the cookie is re-sealed with a new last-seen
    assert len(set_cookies(client.get("/get/user"))) == 1
    clock.advance(IDLE * 0.9)  # within idle of the touch, beyond idle of the write
    assert client.get("/get/user").text == "alice"
    clock.advance(IDLE)
    assert client.get("/get/user").text == "-"


def test_absolute_timeout_ends_even_an_active_session(client: FlaskClient,
                                                      clock: FakeClock) -> None:
    client.post("/set/user/alice")
    elapsed = 0.0
    while elapsed + IDLE / 2 < ABSOLUTE:
        clock.advance(IDLE / 2)
        elapsed += IDLE / 2
        assert client.get("/get/user").text == "alice"
    clock.advance(IDLE / 2)
    assert client.get("/get/user").text == "-"


def test_lowering_a_timeout_applies_to_existing_cookies(app: flask.Flask, client: FlaskClient,
                                                        clock: FakeClock) -> None:
    client.post("/set/user/alice")
    clock.advance(600)
    app.config["SATCHEL_IDLE_TIMEOUT"] = 300
    assert client.get("/get/user").text == "-"


def test_permanent_cookie_expires_with_the_absolute_deadline(client: FlaskClient,
                                                             app: flask.Flask) -> None:
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(days=31)
    client.post("/set/user/alice")
    response = client.post("/permanent")
    cookie = client.get_cookie("session")
    assert cookie is not None and cookie.expires is not None
    lifetime = cookie.expires.timestamp() - FakeClock().now
    assert ABSOLUTE - 5 <= lifetime <= ABSOLUTE + 5
    assert "Expires=" in set_cookies(response)[0]


def test_untouched_request_refreshes_only_a_permanent_cookie(client: FlaskClient) -> None:
    client.post("/set/user/alice")
    response = client.get("/untouched")
    assert set_cookies(response) == [] and "Vary" not in response.headers
    client.post("/permanent")
    refreshed = client.get("/untouched")
    assert len(set_cookies(refreshed)) == 1
    assert client.get("/get/user").text == "alice"


# -- logout ----------------------------------------------------------------------------------


def test_destroy_expires_the_cookie(client: FlaskClient) -> None:
    client.post("/set/user/alice")
    response = client.post("/logout")
    (header,) = set_cookies(response)
    assert "Expires=Thu, 01 Jan 1970" in header
    assert cookie_of(client) is None
    assert client.get("/get/user").text == "-"


# -- size budget -------------------------------------------------------------------------------


def test_session_too_large_names_size_limit_and_remedy(client: FlaskClient) -> None:
    incompressible = secrets.token_urlsafe(3500)  # 4,667 random characters: little to compress
    with pytest.raises(SessionTooLarge) as info:
        client.post(f"/set/blob/{incompressible}")
    error = info.value
    assert error.limit == 4093 and error.size > 4093
    message = str(error)
    assert str(error.size) in message and "4093" in message and "SATCHEL_STORE" in message
    assert cookie_of(client) is None  # nothing half-sent


def test_compression_lets_a_repetitive_session_fit(client: FlaskClient) -> None:
    client.post("/set/notes/" + "lorem-ipsum-" * 500)  # 6,000 characters, compressible
    token = cookie_of(client)
    assert token is not None and len(token) < 1000
    assert client.get("/get/notes").text == "lorem-ipsum-" * 500


def test_unencodable_value_names_the_key(app: flask.Flask) -> None:
    @app.post("/object")
    def store_object() -> str:
        flask.session["widget"] = object()
        return "ok"

    with pytest.raises(CodecError, match="'widget'"):
        app.test_client().post("/object")


# -- migration from Flask's own cookie sessions -----------------------------------------


def flask_cookie(data: dict[str, Any], secret: str = "current secret key") -> str:
    app = flask.Flask(__name__)
    app.secret_key = secret
    serializer = SecureCookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    return str(serializer.dumps(data))


@pytest.mark.parametrize("store", ["cookie://", "memory://"])
def test_flask_cookie_is_read_once_and_reissued(make_app: AppFactory, store: str) -> None:
    app = make_app(store, SATCHEL_READ_FLASK_COOKIES=True)
    client = app.test_client()
    legacy = flask_cookie({"user": "alice", "point": (1, 2), "note": Markup("<b>hi</b>"),
                           "_permanent": True})
    client.set_cookie("session", legacy)
    response = client.get("/dump")
    assert response.json == {"user": "'alice'", "point": "(1, 2)",
                             "note": "Markup('<b>hi</b>')"}
    (header,) = set_cookies(response)
    assert "Expires=" in header  # it was permanent, and stays so
    reissued = cookie_of(client)
    assert reissued is not None and reissued != legacy and reissued.count(".") <= 1

    # From now on the browser holds satchel's cookie, with the same data.
    assert client.get("/get/user").text == "alice"
    assert cookie_of(client).count(".") <= 1  # type: ignore[union-attr]


def test_flask_cookies_are_not_read_unless_asked(make_app: AppFactory,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    client = make_app().test_client()
    client.set_cookie("session", flask_cookie({"user": "alice"}))
    with caplog.at_level(logging.INFO, logger="satchel.security"):
        assert client.get("/get/user").text == "-"
    assert security_lines(caplog)


def test_flask_cookie_signed_with_another_secret_is_rejected(
        make_app: AppFactory, caplog: pytest.LogCaptureFixture) -> None:
    client = make_app(SATCHEL_READ_FLASK_COOKIES=True).test_client()
    client.set_cookie("session", flask_cookie({"user": "mallory"}, secret="attacker's key"))
    with caplog.at_level(logging.INFO, logger="satchel.security"):
        response = client.get("/get/user")
    assert response.status_code == 200 and response.text == "-"
    assert any("not a valid Flask session cookie" in line for line in security_lines(caplog))


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    "garbage", "", "a.b.c", "." * 50, "A" * 4000, "é" * 10, "AQAAAAAA", "====",
    "AQEAAAAA" + "A" * 100,
])
def test_bad_cookies_give_an_empty_session_and_200(make_app: AppFactory, bad: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    for read_flask in (False, True):
        client = make_app(SATCHEL_READ_FLASK_COOKIES=read_flask).test_client()
        client.set_cookie("session", bad)
        with caplog.at_level(logging.INFO, logger="satchel.security"):
            response = client.get("/get/user")
        assert (response.status_code, response.text) == (200, "-")
    for line in security_lines(caplog):
        assert bad[:20] not in line or len(bad) < 4


def test_tampered_real_token_is_rejected_with_a_log_line(
        client: FlaskClient, caplog: pytest.LogCaptureFixture) -> None:
    client.post("/set/role/user")
    token = cookie_of(client)
    assert token is not None
    flipped = token[:30] + ("A" if token[30] != "A" else "B") + token[31:]
    client.set_cookie("session", flipped)
    with caplog.at_level(logging.INFO, logger="satchel.security"):
        assert client.get("/get/role").text == "-"
    assert len(security_lines(caplog)) == 1


# -- reading the Cookie header -------------------------------------------------------------


@pytest.mark.parametrize("around", [
    ("xsession=decoy; ", ""),
    ("", "; session_old=decoy"),
    ('quoted="a;b\\"c"; ', "; other=1"),
    ("  ", "  "),
])
def test_the_session_cookie_is_found_among_others(client: FlaskClient, app: flask.Flask,
                                                  around: tuple[str, str]) -> None:
    client.post("/set/user/alice")
    token = cookie_of(client)
    assert token is not None
    before, after = around
    fresh = app.test_client(use_cookies=False)
    response = fresh.get("/get/user", headers={"Cookie": f"{before}session={token}{after}"})
    assert response.text == "alice"


@pytest.mark.parametrize("refresh", [True, False])
def test_a_request_older_than_a_login_can_undo_it_as_the_readme_says(
    make_app: AppFactory, refresh: bool
) -> None:
    """The README's cookie-mode limit: a sealed cookie cannot know a newer one exists."""
    app = make_app(SESSION_REFRESH_EACH_REQUEST=refresh)
    browser = app.test_client()
    browser.post("/set/cart/x")
    browser.post("/permanent")
    before_login = cookie_of(browser)
    browser.post("/set/user/alice")  # the login
    assert browser.get("/get/user").text == "alice"
    late = app.test_client(use_cookies=False)  # a read that began before the login
    response = late.get("/get/cart", headers={"Cookie": f"session={before_login}"})
    # With refresh on, its response re-seals the pre-login session: were it to reach the
    # browser after the login's, the user would be logged out. With refresh off, a read
    # re-seals nothing (until a touch is due).
    assert bool(set_cookies(response)) == refresh


def test_a_value_changed_in_place_is_not_seen_by_a_request_with_the_same_cookie(
        app: flask.Flask, client: FlaskClient) -> None:
    """Requests that send the same cookie each get their own lists and dicts: one that
    appends to the cart does not change what the next one with that cookie reads."""
    client.post("/cart/apple")
    client.post("/set/n/1")
    cookie = cookie_of(client)
    assert cookie is not None
    for _ in range(2):
        client.set_cookie("session", cookie)
        client.post("/cart/pear")
        client.set_cookie("session", cookie)
        assert client.get("/dump").json == {"cart": "['apple']", "n": "'1'"}
