"""A request whose view never touches its session: what the browser gets, in every mode.

open_session defers the cookie lookup to the session's first use, and Flask is told
(``is_null_session``) that a never used session with nothing to refresh needs no save:
none of that may change what a response carries, or what a later request sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import flask
import pytest
from flask import Flask
from werkzeug.test import TestResponse

from satchel import MemoryStore, Satchel
from satchel.flask import SatchelSessionInterface
from tests.clock import FakeClock
from tests.modes import MODES, mode_app


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def cleanup() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def _app(mode: str, tmp_path: Path, cleanup: ExitStack, **config: Any) -> Flask:
    app = mode_app(mode, FakeClock(), tmp_path, cleanup, **config)

    @app.get("/login/<kind>")
    def login(kind: str) -> str:
        flask.session["user"] = "alice"
        flask.session.permanent = kind == "permanent"
        return "in"

    @app.get("/user")
    def user() -> str:
        return str(flask.session.get("user"))

    @app.get("/untouched")
    def untouched() -> str:
        return "ok"

    @app.get("/looks")
    def looks() -> str:  # the session object, never its data
        return str(flask.session.modified)

    return app


def _vary(response: TestResponse) -> set[str]:
    return {value.strip().lower() for value in response.headers.get("Vary", "").split(",")
            if value.strip()}


@pytest.mark.parametrize("kind", ["browser", "permanent"])
@pytest.mark.parametrize("refresh", [True, False])
def test_an_untouched_request_sends_what_it_always_did(mode: str, kind: str, refresh: bool,
                                                       tmp_path: Path,
                                                       cleanup: ExitStack) -> None:
    app = _app(mode, tmp_path, cleanup, SESSION_REFRESH_EACH_REQUEST=refresh)
    client = app.test_client()
    client.get(f"/login/{kind}")
    cookie = client.get_cookie("session")
    assert cookie is not None
    for _ in range(3):  # a path seen before, as one not seen yet (prefetching learns paths)
        response = client.get("/untouched")
        assert response.text == "ok"
        refreshed = kind == "permanent" and refresh
        # Flask re-sends a permanent cookie on each request (SESSION_REFRESH_EACH_REQUEST),
        # with Vary: Cookie: a sealed cookie is re-sealed; a server-side session sends only
        # the Vary header (no store call for a session the view never used)
        sent = response.headers.getlist("Set-Cookie")
        assert bool(sent) == (refreshed and mode == "cookie")
        assert ("cookie" in _vary(response)) == refreshed
        if mode != "cookie":
            assert client.get_cookie("session").value == cookie.value  # type: ignore[union-attr]
    assert client.get("/user").text == "alice"


def test_an_untouched_request_without_a_cookie_sends_nothing(mode: str, tmp_path: Path,
                                                             cleanup: ExitStack) -> None:
    app = _app(mode, tmp_path, cleanup)
    response = app.test_client().get("/untouched")
    assert response.headers.getlist("Set-Cookie") == []
    assert "cookie" not in _vary(response)


def test_a_view_that_only_looks_at_the_session_object_varies_on_the_cookie(
        mode: str, tmp_path: Path, cleanup: ExitStack) -> None:
    # flask.session marks the session accessed (Flask's rule for Vary: Cookie), loaded or not
    app = _app(mode, tmp_path, cleanup)
    client = app.test_client()
    client.get("/login/browser")
    response = client.get("/looks")
    assert response.text == "False"
    assert "cookie" in _vary(response)
    assert response.headers.getlist("Set-Cookie") == []
    assert client.get("/user").text == "alice"


def test_a_session_first_used_after_the_view_holds_the_request_data(
        mode: str, tmp_path: Path, cleanup: ExitStack) -> None:
    app = _app(mode, tmp_path, cleanup)
    seen: list[Any] = []

    @app.after_request
    def late(response: flask.Response) -> flask.Response:
        seen.append(flask.session.get("user"))
        return response

    client = app.test_client()
    client.get("/login/browser")
    client.get("/untouched")
    assert seen[-1] == "alice"
    assert client.get("/user").text == "alice"


def test_flask_never_sees_a_null_session_in_a_view(mode: str, tmp_path: Path,
                                                   cleanup: ExitStack) -> None:
    app = _app(mode, tmp_path, cleanup)

    @app.get("/null")
    def null() -> str:
        return str(app.session_interface.is_null_session(flask.session))

    client = app.test_client()
    client.get("/login/browser")
    assert client.get("/null").text == "False"


def test_an_untouched_session_transaction_keeps_the_session(mode: str, tmp_path: Path,
                                                            cleanup: ExitStack) -> None:
    app = _app(mode, tmp_path, cleanup)
    client = app.test_client()
    client.get("/login/browser")
    with client.session_transaction():
        pass
    assert client.get("/user").text == "alice"
    with client.session_transaction() as session:
        assert session["user"] == "alice"
        session["user"] = "bob"
    assert client.get("/user").text == "bob"


def test_a_subclass_that_saves_is_asked_to_save_every_request() -> None:
    # Flask calls save_session for every session it does not find null: a subclass that
    # overrides save_session (to add a header, say) still sees untouched requests.
    saved: list[str] = []

    class Counting(SatchelSessionInterface):
        def save_session(self, app: Flask, session: Any, response: flask.Response) -> None:
            saved.append(flask.request.path)
            super().save_session(app, session, response)

    app = Flask(__name__)
    app.config["SECRET_KEY"] = "k" * 32
    Satchel(app, store=MemoryStore())
    app.session_interface = Counting(app.session_interface.engine)  # type: ignore[attr-defined]

    @app.get("/set")
    def set_value() -> str:
        flask.session["v"] = 1
        return "set"

    @app.get("/untouched")
    def untouched() -> str:
        return "ok"

    client = app.test_client()
    client.get("/set")
    client.get("/untouched")
    client.get("/untouched")
    assert saved == ["/set", "/untouched", "/untouched"]
