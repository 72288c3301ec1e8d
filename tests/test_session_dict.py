"""``flask.session`` is a ``dict``, as Flask's own session is, in every mode.

Each view uses the session first through the operation under test, so the
lazy load must happen inside it; each result is read back by a later request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, flash, get_flashed_messages, jsonify, render_template_string, session
from flask.testing import FlaskClient

from tests.clock import FakeClock
from tests.modes import MODES, mode_app


@pytest.fixture(params=MODES)
def app(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Flask]:
    with ExitStack() as cleanup:
        app = mode_app(request.param, FakeClock(), tmp_path, cleanup)

        @app.get("/seed")
        def seed() -> str:
            session.update({"user": "alice", "cart": ["apple"]})
            session.permanent = True
            return "ok"

        @app.get("/jsonify")
        def jsonify_session() -> Any:
            return jsonify(session)

        @app.get("/json-dumps")
        def json_dumps() -> str:
            # flask.session is a proxy, which the standard library's json cannot see through
            # (with Flask's own session too); the object behind it is a dict. json's C encoder
            # reads an empty dict's storage directly, so the session must have been used.
            real = session._get_current_object()  # type: ignore[attr-defined]
            assert "user" in real
            return json.dumps(real, sort_keys=True)

        @app.get("/tojson")
        def tojson() -> str:
            return render_template_string("{{ session|tojson }}")

        @app.get("/copy")
        def copy() -> Any:
            copied = session.copy()
            assert type(copied) is dict
            return {"is_dict": isinstance(session, dict), "copy": copied,
                    "dict": dict(session), "unpacked": {**session},
                    "equal": session == copied, "union": session | {"x": 1}}

        @app.get("/items-mutation")
        def items_mutation() -> str:
            for _, value in session.items():
                if isinstance(value, list):
                    value.append("pear")
            return "ok"

        @app.get("/values-mutation")
        def values_mutation() -> str:
            for value in session.values():
                if isinstance(value, list):
                    value.append("plum")
            return "ok"

        @app.get("/mapping-ops")
        def mapping_ops() -> Any:
            popped = session.pop("user")
            session.setdefault("theme", "dark")
            alias = session
            alias |= {"lang": "fr"}
            last = session.popitem()
            return {"popped": popped, "last": list(last), "missing": session.pop("nope", None)}

        @app.get("/dump")
        def dump() -> Any:
            return {"data": dict(session), "permanent": session.permanent}

        @app.get("/clear-and-flash")
        def clear_and_flash() -> str:
            session.clear()
            flash("bye")
            return "ok"

        @app.get("/destroy-and-flash")
        def destroy_and_flash() -> str:
            session.destroy()  # type: ignore[attr-defined]
            flash("bye")
            return "ok"

        @app.get("/flashes")
        def flashes() -> Any:
            return {"flashes": get_flashed_messages(), "permanent": session.permanent}

        yield app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.get("/seed")
    return client


SEEDED = {"user": "alice", "cart": ["apple"]}


def test_jsonify_session(client: FlaskClient) -> None:
    # (`return session` fails with Flask's own session too: Flask takes the proxy for an
    # iterator, since werkzeug's LocalProxy has __next__.)
    response = client.get("/jsonify")
    assert response.status_code == 200 and response.json == SEEDED


@pytest.mark.parametrize("path", ["/json-dumps", "/tojson"])
def test_json_dumps_of_the_session(client: FlaskClient, path: str) -> None:
    assert json.loads(client.get(path).text) == SEEDED


def test_copy_dict_unpack_equality_and_union(client: FlaskClient) -> None:
    assert client.get("/copy").json == {
        "is_dict": True, "copy": SEEDED, "dict": SEEDED, "unpacked": SEEDED, "equal": True,
        "union": {**SEEDED, "x": 1}}


def test_values_changed_through_items_and_values_are_saved(client: FlaskClient) -> None:
    client.get("/items-mutation")
    client.get("/values-mutation")
    assert client.get("/dump").json["data"]["cart"] == ["apple", "pear", "plum"]


def test_pop_setdefault_ior_and_popitem_are_saved(client: FlaskClient) -> None:
    assert client.get("/mapping-ops").json == {"popped": "alice", "last": ["lang", "fr"],
                                              "missing": None}
    assert client.get("/dump").json["data"] == {"cart": ["apple"], "theme": "dark"}


@pytest.mark.parametrize("path", ["/clear-and-flash", "/destroy-and-flash"])
def test_clear_and_destroy_make_the_session_non_permanent(client: FlaskClient,
                                                          path: str) -> None:
    assert client.get("/dump").json["permanent"] is True
    response = client.get(path)
    cookie = response.headers["Set-Cookie"]
    assert "Expires=" not in cookie  # a browser-session cookie, as Flask's clear() gives
    assert client.get("/flashes").json == {"flashes": ["bye"], "permanent": False}
