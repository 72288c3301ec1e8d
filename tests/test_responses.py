"""The session headers satchel adds to a response (satchel.flask.responses), and the cookie
attributes it reads through Flask's getters."""

from __future__ import annotations

from typing import Any

import flask
import pytest
from flask import Flask, Response
from werkzeug.datastructures import Headers

from satchel import MemoryStore, Satchel
from satchel.flask.interface import SatchelSessionInterface
from satchel.flask.responses import add_session_headers

COOKIE = "session=abc.bXYZ; HttpOnly; Path=/; SameSite=Lax"


def _werkzeug_way(response: Response, set_cookie: str | None) -> list[tuple[str, str]]:
    """The headers Werkzeug's own calls give (vary.add, set_cookie header, cache_control)."""
    response.vary.add("Cookie")
    if set_cookie is not None:
        response.headers.add("Set-Cookie", set_cookie)
        response.cache_control.private = True
    return list(response.headers)


@pytest.mark.parametrize("set_cookie", [None, COOKIE])
@pytest.mark.parametrize("existing", [
    [],
    [("Vary", "Accept-Encoding")],
    [("Vary", "Cookie")],
    [("Cache-Control", "max-age=60")],
    [("Vary", "Accept"), ("Cache-Control", "no-store")],
])
def test_the_headers_are_those_werkzeug_writes(
        existing: list[tuple[str, str]], set_cookie: str | None) -> None:
    ours, theirs = Response("ok", headers=existing), Response("ok", headers=existing)
    add_session_headers(ours, set_cookie)
    assert sorted(ours.headers) == sorted(_werkzeug_way(theirs, set_cookie))


@pytest.mark.parametrize("newline", ["\n", "\r"])
def test_a_set_cookie_with_a_newline_is_refused_as_werkzeug_refuses_it(newline: str) -> None:
    response = Response("ok")
    with pytest.raises(ValueError, match="newline"):
        add_session_headers(response, COOKIE + newline + "Injected: yes")
    assert "Injected" not in str(response.headers) and "Set-Cookie" not in response.headers


def test_a_headers_class_of_the_apps_own_gets_every_header_through_its_add() -> None:
    added: list[str] = []

    class CheckedHeaders(Headers):
        def add(self, key: str, value: Any, /, **kwargs: Any) -> None:
            added.append(key)
            super().add(key, value, **kwargs)

    response = Response("ok", headers=CheckedHeaders())
    add_session_headers(response, COOKIE)
    assert added == ["Vary", "Set-Cookie", "Cache-Control"]
    assert response.headers["Set-Cookie"] == COOKIE


@pytest.mark.parametrize(("getter", "value", "attribute"), [
    ("get_cookie_domain", "example.org", "Domain=example.org"),
    ("get_cookie_path", "/shop", "Path=/shop"),
    ("get_cookie_secure", True, "Secure"),
    ("get_cookie_httponly", False, None),
    ("get_cookie_partitioned", True, "Partitioned"),
])
def test_a_getter_a_subclass_overrides_sets_the_cookie_attribute(
        getter: str, value: Any, attribute: str | None) -> None:
    app = Flask(__name__)
    app.secret_key = "a-secret-key-for-the-tests-of-responses-0123456789"
    Satchel(app, store=MemoryStore())
    interface = app.session_interface
    assert isinstance(interface, SatchelSessionInterface)
    subclass = type("Overriding", (SatchelSessionInterface,), {getter: lambda self, app: value})
    app.session_interface = subclass(interface.engine)

    @app.get("/")
    def write() -> str:
        flask.session["n"] = 1
        return "ok"

    header = app.test_client().get("/").headers["Set-Cookie"]
    parts = [part.strip() for part in header.split(";")]
    if attribute is None:  # HttpOnly turned off
        assert "HttpOnly" not in parts
    else:
        assert attribute in parts
