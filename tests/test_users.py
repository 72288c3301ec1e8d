"""SATCHEL_USER_KEY: a login, a logout or a switch of user rotates the session id, in every
server-side mode, on the real servers; the record is filed under the user, with its device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from satchel import ConfigError, NotSupported, Satchel, ids
from tests.clock import FakeClock
from tests.modes import USER_MODES, mode_app

COOKIE = "session"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def build(mode: str, clock: FakeClock, folder: Path, cleanup: ExitStack, **config: Any) -> Flask:
    app = mode_app(mode, clock, folder, cleanup, **config)
    key = app.config.get("SATCHEL_USER_KEY", "_user_id")

    @app.post("/login/<name>")
    def login(name: str) -> str:
        session[key] = name  # what Flask-Login's login_user does, or a tutorial's view
        return "in"

    @app.post("/logout")
    def logout() -> str:
        session.pop(key, None)  # what Flask-Login's logout_user does
        return "out"

    @app.post("/set/<name>/<value>")
    def put(name: str, value: str) -> str:
        session[name] = value
        return "ok"

    @app.post("/int-login")
    def int_login() -> str:
        session[key] = 7
        return "in"

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {"data": dict(session), "handle": getattr(session, "handle", None)}

    return app


@pytest.fixture(params=USER_MODES)
def app(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Flask]:
    with ExitStack() as cleanup:
        yield build(request.param, clock, tmp_path, cleanup)


def cookie_of(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def with_cookie(app: Flask, value: str) -> FlaskClient:
    client = app.test_client()
    client.set_cookie(COOKIE, value)
    return client


def sid_of(cookie: str) -> str:
    """The session id in a server-side cookie (``<id>.<flag><mac>``, see signed_id)."""
    return cookie[: ids.ID_LENGTH]


def stored_user(app: Flask, cookie: str) -> str | None:
    record = Satchel.store_of(app).load(ids.storage_key(sid_of(cookie)))
    assert record is not None
    return record.user


def test_a_login_rotates_the_id_and_the_pre_login_id_is_dead(app: Flask,
                                                             clock: FakeClock) -> None:
    client = app.test_client()
    client.post("/set/cart/book")
    before = cookie_of(client)
    client.post("/login/alice")
    after = cookie_of(client)
    assert after != before
    assert client.get("/me").json["data"] == {"cart": "book", "_user_id": "alice"}
    assert stored_user(app, after) == "alice"
    # The pre-login id (a planted one, say) never sees the login, and keeps nothing it writes.
    planted = with_cookie(app, before)
    assert "_user_id" not in planted.get("/me").json["data"]
    planted.post("/set/cart/bomb")
    assert client.get("/me").json["data"]["cart"] == "book"
    clock.advance(3600)  # past the grace period: the old id opens nothing at all
    assert with_cookie(app, before).get("/me").json["data"] == {}


def test_a_logout_and_a_switch_of_user_rotate_too(app: Flask) -> None:
    client = app.test_client()
    client.post("/login/alice")
    alice = cookie_of(client)
    client.post("/login/bob")
    bob = cookie_of(client)
    assert bob != alice and stored_user(app, bob) == "bob"
    client.post("/set/theme/dark")  # an ordinary write keeps the id
    assert cookie_of(client) == bob
    client.post("/logout")
    out = cookie_of(client)
    assert out not in (alice, bob)
    assert stored_user(app, out) is None
    assert client.get("/me").json["data"] == {"theme": "dark"}
    assert with_cookie(app, bob).get("/me").json["data"].get("_user_id") != "bob"


def test_users_compare_as_strings(app: Flask) -> None:
    """Flask-Login stores str(id): an int and its str name the same user (no rotation)."""
    client = app.test_client()
    client.post("/login/7")
    first = cookie_of(client)
    client.post("/int-login")
    assert cookie_of(client) == first
    assert stored_user(app, first) == "7"


def test_reading_a_logged_in_session_writes_nothing_and_sends_no_cookie(app: Flask) -> None:
    client = app.test_client()
    client.post("/login/alice")
    response = client.get("/me")
    assert response.json["data"] == {"_user_id": "alice"}
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("mode", USER_MODES)
def test_a_tutorial_app_gets_the_rotation_with_its_own_user_key(
        mode: str, clock: FakeClock, tmp_path: Path) -> None:
    with ExitStack() as cleanup:
        app = build(mode, clock, tmp_path, cleanup, SATCHEL_USER_KEY="user")
        client = app.test_client()
        client.post("/set/_user_id/x")  # not the user key here: no rotation
        before = cookie_of(client)
        client.post("/login/alice")
        assert cookie_of(client) != before
        assert stored_user(app, cookie_of(client)) == "alice"


@pytest.mark.parametrize("mode", USER_MODES)
def test_no_user_key_no_rotation(mode: str, clock: FakeClock, tmp_path: Path) -> None:
    with ExitStack() as cleanup:
        app = build(mode, clock, tmp_path, cleanup, SATCHEL_USER_KEY=None)
        client = app.test_client()
        client.post("/set/a/1")
        before = cookie_of(client)
        client.post("/set/_user_id/alice")
        assert cookie_of(client) == before
        assert stored_user(app, before) is None


def test_the_device_is_recorded_at_login(app: Flask) -> None:
    client = app.test_client()
    client.post("/login/alice", headers={"User-Agent": "Mozilla/5.0 (X11; Linux) Firefox/140"},
                environ_base={"REMOTE_ADDR": "192.0.2.7"})
    record = Satchel.store_of(app).load(ids.storage_key(sid_of(cookie_of(client))))
    assert record is not None
    assert record.device == "Mozilla/5.0 (X11; Linux) Firefox/140 (192.0.2.7)"


@pytest.mark.parametrize("mode", USER_MODES)
def test_no_device_is_recorded_when_turned_off(mode: str, clock: FakeClock,
                                               tmp_path: Path) -> None:
    with ExitStack() as cleanup:
        app = build(mode, clock, tmp_path, cleanup, SATCHEL_RECORD_DEVICE=False)
        client = app.test_client()
        client.post("/login/alice", headers={"User-Agent": "Firefox"})
        record = Satchel.store_of(app).load(ids.storage_key(sid_of(cookie_of(client))))
        assert record is not None and record.device is None


@pytest.mark.parametrize(("name", "value"), [
    ("SATCHEL_USER_KEY", ""), ("SATCHEL_USER_KEY", 3), ("SATCHEL_USER_KEY", b"user"),
    ("SATCHEL_MAX_SESSIONS_PER_USER", 0), ("SATCHEL_MAX_SESSIONS_PER_USER", -1),
    ("SATCHEL_MAX_SESSIONS_PER_USER", "3"), ("SATCHEL_MAX_SESSIONS_PER_USER", 2.0),
    ("SATCHEL_MAX_SESSIONS_PER_USER", True), ("SATCHEL_RECORD_DEVICE", "no"),
    ("SATCHEL_RECORD_DEVICE", 0),
])
def test_bad_user_settings_are_refused_at_init(name: str, value: object) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE="memory://", **{name: value})
    with pytest.raises(ConfigError, match=name):
        Satchel(app)


def test_a_cap_without_a_user_key_is_refused() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE="memory://", SATCHEL_USER_KEY=None,
                      SATCHEL_MAX_SESSIONS_PER_USER=3)
    with pytest.raises(ConfigError, match="SATCHEL_MAX_SESSIONS_PER_USER needs"):
        Satchel(app)


def test_cookie_mode_cannot_list_or_revoke_and_says_so() -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE="cookie://")
    satchel = Satchel(app)
    with app.test_request_context():
        for call in (lambda: satchel.sessions_of("alice"),
                     lambda: satchel.revoke_user("alice"),
                     lambda: satchel.revoke("x" * 64)):
            with pytest.raises(NotSupported, match="cannot be listed or revoked one by one"):
                call()
