"""The session cookie's value in a Cookie header, and the config open_session reads."""

from __future__ import annotations

from typing import Any

import flask
import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from satchel import MemoryStore, Satchel
from satchel.flask.opening import (
    NO_COOKIE,
    PERMANENT_COOKIE,
    PLAIN_COOKIE,
    CookieStates,
    session_cookie,
)

_PIECES = st.sampled_from(["session", "sess", "x", "=", ";", " ", "; ", "\t", "\xa0", "abc",
                           "a.b", "p", "\u2003", "session=", "=v", ""])
_HEADERS = st.lists(_PIECES, max_size=10).map("".join)


def _request(header: str) -> Request:
    environ = EnvironBuilder(path="/").get_environ()
    environ["HTTP_COOKIE"] = header
    return Request(environ)


@given(_HEADERS, st.sampled_from(["session", "sess", "x"]))
def test_the_fast_look_at_the_header_finds_what_the_full_scan_finds(header: str,
                                                                     name: str) -> None:
    request = _request(header)
    assert session_cookie(request, name, name + "=") == session_cookie(request, name)


@pytest.mark.parametrize(("header", "expected"), [
    ("session=abc", "abc"),
    ("session= abc ;x=1", "abc"),
    ("x=1; session=abc; session=def", "abc"),
    (" session =abc", "abc"),
    ("session", ""),
    ("sessions=abc", None),
    ("x=session", None),
    ("", None),
])
def test_the_session_cookie_of_a_header(header: str, expected: str | None) -> None:
    request = _request(header)
    assert session_cookie(request, "session", "session=") == expected
    assert session_cookie(request, "session") == expected


def _looks_permanent(cookie: str) -> bool:
    return cookie.startswith("p")


@given(_HEADERS, st.sampled_from(["session", "sess", "x"]))
def test_what_a_header_is_remembered_as_is_what_a_parse_finds(header: str, name: str) -> None:
    states = CookieStates(name, name + "=", _looks_permanent)
    request = _request(header)
    cookie = session_cookie(request, name)
    state = (NO_COOKIE if cookie is None else PERMANENT_COOKIE if _looks_permanent(cookie)
             else PLAIN_COOKIE)
    assert states.of(request) == (state, cookie)  # parsed
    assert states.of(request) == (state, cookie)  # remembered
    assert states.of(_request(header)) == (state, cookie)  # an equal header, a new request


def test_what_is_remembered_of_headers_is_bounded_and_never_shown() -> None:
    states = CookieStates("session", "session=", _looks_permanent)
    for n in range(5000):
        assert states.of(_request(f"session=v{n}")) == (PLAIN_COOKIE, f"v{n}")
    assert len(states) <= 2049
    long = "session=secret-value; other=" + "y" * 2000  # a long header is never kept
    assert states.of(_request(long)) == (PLAIN_COOKIE, "secret-value")
    assert long not in states
    states.of(_request("session=secret-value"))
    assert "secret" not in repr(states)
    environ = EnvironBuilder(path="/").get_environ()
    environ.pop("HTTP_COOKIE", None)
    assert states.of(Request(environ)) == (NO_COOKIE, None)


def _app(**config: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, **config)

    @app.get("/set")
    def set_value() -> str:
        flask.session["v"] = "1"
        return "set"

    @app.get("/get")
    def get_value() -> str:
        return str(flask.session.get("v"))

    @app.get("/untouched")
    def untouched() -> str:
        return "ok"

    Satchel(app, store=MemoryStore())
    return app


def test_a_cookie_name_changed_between_requests_is_used_at_once() -> None:
    app = _app()
    client = app.test_client()
    client.get("/set")
    app.config["SESSION_COOKIE_NAME"] = "other"
    assert client.get("/get").text == "None"  # the cookie named "session" is not "other"
    client.get("/set")
    assert client.get_cookie("other") is not None
    assert client.get("/get").text == "1"


def test_fallbacks_given_as_a_list_that_changes_are_read_again() -> None:
    app = _app(SECRET_KEY_FALLBACKS=[])
    client = app.test_client()
    client.get("/set")
    app.config["SECRET_KEY_FALLBACKS"].append(app.config["SECRET_KEY"])
    app.config["SECRET_KEY"] = "n" * 32
    assert client.get("/get").text == "1"  # signed with what is now a fallback key...
    app.config["SECRET_KEY_FALLBACKS"].clear()
    assert client.get("/get").text == "1"  # ...and re-signed with the new one by that read


def test_a_fallback_removed_from_its_list_no_longer_opens_sessions() -> None:
    app = _app(SECRET_KEY_FALLBACKS=[])
    client = app.test_client()
    client.get("/set")
    cookie = client.get_cookie("session")
    assert cookie is not None
    old = app.config["SECRET_KEY"]
    app.config["SECRET_KEY"] = "n" * 32
    app.config["SECRET_KEY_FALLBACKS"].append(old)
    client.get("/get")  # opens under the fallback (and re-signs the browser's cookie)
    app.config["SECRET_KEY_FALLBACKS"].remove(old)  # the same list object, changed
    client.set_cookie("session", cookie.value)  # the cookie signed with the old key
    assert client.get("/get").text == "None"


def test_init_app_keeps_the_values_the_config_holds_and_fills_in_the_others() -> None:
    app = _app(SATCHEL_PREFETCH=False, SATCHEL_IDLE_TIMEOUT=600)
    assert app.config["SATCHEL_PREFETCH"] is False
    assert app.config["SATCHEL_IDLE_TIMEOUT"] == 600
    assert app.config["SATCHEL_ABSOLUTE_TIMEOUT"] is None  # what its absence means


@pytest.mark.parametrize("key", ["SATCHEL_IDLE_TIMEOUT", "SATCHEL_ABSOLUTE_TIMEOUT",
                                 "SATCHEL_READ_FLASK_COOKIES", "SATCHEL_PREFETCH",
                                 "SECRET_KEY_FALLBACKS"])
def test_a_key_deleted_after_init_app_reads_as_absent(key: str) -> None:
    app = _app()
    client = app.test_client()
    client.get("/set")
    del app.config[key]
    assert client.get("/get").text == "1"
    assert client.get("/untouched").text == "ok"



def test_a_failed_open_logs_its_own_error_and_no_second_one(
        caplog: pytest.LogCaptureFixture) -> None:
    # A config made invalid after init_app: open_session raises. Flask answers 500 and still
    # finalizes the response, calling save_session with no session; that must not log a
    # second, misleading error (a TypeError about saving None) next to the real one.
    app = flask.Flask(__name__)
    app.secret_key = "s" * 40
    Satchel(app, store=MemoryStore())

    @app.get("/")
    def index() -> str:
        return "ok"

    app.config["SATCHEL_IDLE_TIMEOUT"] = -1
    with caplog.at_level("ERROR"):
        response = app.test_client().get("/")
    assert response.status_code == 500
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [type(r.exc_info[1]).__name__ for r in errors if r.exc_info] == ["ValueError"]
    assert "SATCHEL_IDLE_TIMEOUT" in str(errors[0].exc_info[1])
