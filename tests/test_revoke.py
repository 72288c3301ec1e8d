"""Listing and ending a user's sessions, on every server-side store, on the real servers:
``sessions_of``, ``revoke``, ``revoke_user`` (with ``keep_current``), ``session.handle``,
and ``SATCHEL_MAX_SESSIONS_PER_USER``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from satchel import Satchel
from tests.clock import FakeClock
from tests.modes import USER_MODES, mode_app

HOUR = 3600.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def build(mode: str, clock: FakeClock, folder: Path, cleanup: ExitStack, **config: Any) -> Flask:
    app = mode_app(mode, clock, folder, cleanup, SATCHEL_IDLE_TIMEOUT=HOUR, **config)
    satchel: Satchel = app.extensions["satchel"]

    @app.post("/login/<name>")
    def login(name: str) -> str:
        session["_user_id"] = name
        return "in"

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {"user": session.get("_user_id"), "data": dict(session)}

    @app.get("/mine")
    def mine() -> list[dict[str, Any]]:
        return [{"handle": s.handle, "current": s.current, "device": s.device}
                for s in satchel.sessions_of(session["_user_id"])]

    @app.get("/handle")
    def handle() -> dict[str, Any]:
        return {"handle": session.handle}  # type: ignore[attr-defined]

    @app.post("/sign-out-others")
    def sign_out_others() -> dict[str, Any]:
        return {"ended": satchel.revoke_user(session["_user_id"], keep_current=True)}

    @app.post("/write-during-revocation")
    def write_during_revocation() -> str:
        user = session["_user_id"]  # loaded before the revocation
        satchel.revoke_user(user)  # as an admin's request running at the same moment
        session["cart"] = ["book"]  # then this request writes
        return "written"

    return app


@pytest.fixture(params=USER_MODES)
def app(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Flask]:
    with ExitStack() as cleanup:
        yield build(request.param, clock, tmp_path, cleanup)


def logged_in(app: Flask, user: str, device: str = "browser") -> FlaskClient:
    client = app.test_client()
    client.post(f"/login/{user}", headers={"User-Agent": device})
    return client


def cookie_of(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def test_sessions_of_lists_the_users_live_sessions_oldest_first(app: Flask,
                                                                clock: FakeClock) -> None:
    first = logged_in(app, "alice", "phone")
    clock.advance(10)
    logged_in(app, "alice", "laptop")
    logged_in(app, "bob", "tablet")
    logged_in(app, "alice2", "someone else's")  # a user whose name starts alike
    with app.app_context():
        listed = app.extensions["satchel"].sessions_of("alice")
    assert [s.device for s in listed] == ["phone (127.0.0.1)", "laptop (127.0.0.1)"]
    assert [s.user for s in listed] == ["alice", "alice"]
    assert listed[0].created_at < listed[1].created_at
    assert not any(s.current for s in listed)  # no request in context
    mine = first.get("/mine").json
    assert [s["current"] for s in mine] == [True, False]
    assert mine[0]["handle"] == first.get("/handle").json["handle"]


def test_the_index_never_lists_an_expired_session(app: Flask, clock: FakeClock) -> None:
    logged_in(app, "alice")
    clock.advance(HOUR - 1)
    fresh = logged_in(app, "alice", "later")
    clock.advance(2)  # the first is past its idle timeout; the second is not
    with app.app_context():
        listed = app.extensions["satchel"].sessions_of("alice")
    assert [s.device for s in listed] == ["later (127.0.0.1)"]
    assert fresh.get("/me").json["user"] == "alice"


def test_revoke_ends_one_session_by_its_handle(app: Flask) -> None:
    phone, laptop = logged_in(app, "alice", "phone"), logged_in(app, "alice", "laptop")
    handle = phone.get("/handle").json["handle"]
    satchel: Satchel = app.extensions["satchel"]
    with app.app_context():
        assert satchel.revoke(handle) is True
        assert satchel.revoke(handle) is False  # ended already
        assert [s.device for s in satchel.sessions_of("alice")] == ["laptop (127.0.0.1)"]
        with pytest.raises(ValueError, match="not a session handle"):
            satchel.revoke(handle[:-1] + ("A" if handle[-1] != "A" else "B"))
    assert phone.get("/me").json == {"user": None, "data": {}}
    assert laptop.get("/me").json["user"] == "alice"


def test_sign_out_my_other_devices_leaves_exactly_the_current_session(app: Flask) -> None:
    others = [logged_in(app, "alice", f"old {n}") for n in range(3)]
    current = logged_in(app, "alice", "this one")
    bob = logged_in(app, "bob")
    assert current.post("/sign-out-others").json == {"ended": 3}
    listed = current.get("/mine").json
    assert [(s["device"], s["current"]) for s in listed] == [("this one (127.0.0.1)", True)]
    for client in others:
        assert client.get("/me").json["user"] is None
    assert current.get("/me").json["user"] == "alice"
    assert bob.get("/me").json["user"] == "bob"


def test_revoked_and_replayed_cookies_open_an_empty_session(app: Flask) -> None:
    client = logged_in(app, "alice")
    stolen = cookie_of(client)
    with app.app_context():
        assert app.extensions["satchel"].revoke_user("alice") == 1
    replay = app.test_client()
    replay.set_cookie("session", stolen)
    assert replay.get("/me").json == {"user": None, "data": {}}
    assert client.get("/me").json == {"user": None, "data": {}}


def test_a_request_in_flight_during_a_revocation_does_not_bring_the_session_back(
        app: Flask) -> None:
    client = logged_in(app, "alice")
    cookie = cookie_of(client)
    assert client.post("/write-during-revocation").text == "written"
    replay = app.test_client()
    replay.set_cookie("session", cookie)
    assert replay.get("/me").json == {"user": None, "data": {}}
    with app.app_context():
        assert app.extensions["satchel"].sessions_of("alice") == []


@pytest.mark.parametrize("mode", USER_MODES)
def test_the_cap_ends_the_oldest_sessions_at_login(mode: str, clock: FakeClock,
                                                   tmp_path: Path) -> None:
    with ExitStack() as cleanup:
        app = build(mode, clock, tmp_path, cleanup, SATCHEL_MAX_SESSIONS_PER_USER=2)
        devices = []
        for number in range(4):
            devices.append(logged_in(app, "alice", f"device {number}"))
            clock.advance(1)
        bob = logged_in(app, "bob")
        assert [c.get("/me").json["user"] for c in devices] == [None, None, "alice", "alice"]
        with app.app_context():
            listed = app.extensions["satchel"].sessions_of("alice")
        assert [s.device for s in listed] == ["device 2 (127.0.0.1)", "device 3 (127.0.0.1)"]
        assert bob.get("/me").json["user"] == "bob"
