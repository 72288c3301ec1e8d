"""A Flask-Login app (the real one, from PyPI) with ``Satchel(app)`` and nothing else
satchel-specific: a login rotates the id, its sessions are listed under the user, and
``revoke_user`` logs every one of them out. On every server-side store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from satchel import Satchel
from tests.clock import FakeClock
from tests.modes import USER_MODES, mode_app
from tests.services import need_module

flask_login = need_module("flask_login")  # in the test extras; missing under CI: a failure


class User(flask_login.UserMixin):  # type: ignore[misc, name-defined]
    def __init__(self, user_id: int) -> None:
        self.id = user_id


@pytest.fixture(params=USER_MODES)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with ExitStack() as cleanup:
        app = mode_app(request.param, FakeClock(), tmp_path, cleanup)
        manager = flask_login.LoginManager(app)

        @manager.user_loader
        def load(user_id: str) -> User | None:
            return User(int(user_id))

        @app.post("/login/<int:user_id>")
        def login(user_id: int) -> str:
            flask_login.login_user(User(user_id))
            return "in"

        @app.post("/logout")
        def logout() -> str:
            flask_login.logout_user()
            return "out"

        @app.get("/private")
        @flask_login.login_required
        def private() -> str:
            return f"hello {flask_login.current_user.id}"

        yield app


def cookie_of(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("session")
    return None if cookie is None else cookie.value


def test_login_rotates_the_id_and_logout_ends_the_login(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/private").status_code == 401
    client.get("/private")
    before = cookie_of(client)
    client.post("/login/7")
    assert cookie_of(client) != before
    assert client.get("/private").text == "hello 7"
    logged_in = cookie_of(client)
    client.post("/logout")
    assert client.get("/private").status_code == 401
    replay = app.test_client()
    replay.set_cookie("session", logged_in or "")
    assert replay.get("/private").status_code == 401  # the logged-in id died with the logout


def test_sessions_are_listed_under_the_user_and_revoke_user_logs_them_all_out(
        app: Flask) -> None:
    devices = [app.test_client() for _ in range(3)]
    for number, client in enumerate(devices):
        client.post("/login/7", headers={"User-Agent": f"device {number}"})
    other = app.test_client()
    other.post("/login/8")
    satchel: Satchel = app.extensions["satchel"]
    with app.app_context():
        listed = satchel.sessions_of(7)
        assert sorted(s.device or "" for s in listed) == [
            "device 0 (127.0.0.1)", "device 1 (127.0.0.1)", "device 2 (127.0.0.1)"]
        assert {s.user for s in listed} == {"7"}
        assert satchel.revoke_user("7") == 3
        assert satchel.sessions_of(7) == []
    for client in devices:
        assert client.get("/private").status_code == 401
    assert other.get("/private").text == "hello 8"
