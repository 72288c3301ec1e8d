"""A store outage gives HTTP 503 and writes nothing; the session survives the outage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import flask
import pytest
from flask.testing import FlaskClient

from satchel import MemoryStore, Satchel, StoreUnavailable
from satchel.store import Patch, Record


class OutageStore:
    """A memory store that can be switched off, failing as a real driver's store does."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.down = False
        self.writes = 0

    def _check(self) -> None:
        if self.down:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except ConnectionRefusedError as err:
                raise StoreUnavailable("store at 127.0.0.1:1 unreachable") from err

    def load(self, key: str) -> Record | None:
        self._check()
        return self.inner.load(key)

    def create(self, key: str, record: Record) -> None:
        self._check()
        self.writes += 1
        self.inner.create(key, record)

    def update(self, key: str, patch: Patch) -> bool:
        self._check()
        self.writes += 1
        return self.inner.update(key, patch)

    def delete(self, key: str) -> None:
        self._check()
        self.writes += 1
        self.inner.delete(key)


@pytest.fixture
def store() -> OutageStore:
    return OutageStore()


@pytest.fixture
def app(store: OutageStore) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32)
    Satchel(app, store=store)

    @app.post("/set/<value>")
    def set_value(value: str) -> str:
        flask.session["value"] = value
        return "ok"

    @app.get("/get")
    def get_value() -> str:
        return str(flask.session.get("value", "-"))

    @app.get("/health")
    def health() -> str:
        return "fine"

    return app


@pytest.fixture
def client(app: flask.Flask) -> FlaskClient:
    return app.test_client()


def session_set_cookies(response: Any) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith("session=")]


def test_outage_during_load_is_503_and_writes_nothing(client: FlaskClient,
                                                      store: OutageStore) -> None:
    client.post("/set/before")
    writes = store.writes
    store.down = True
    response = client.get("/get")
    assert response.status_code == 503
    assert "session store" in response.text and response.headers["Retry-After"]
    assert session_set_cookies(response) == []
    assert client.post("/set/during").status_code == 503
    assert store.writes == writes
    store.down = False
    assert client.get("/get").text == "before"  # the session survived the outage


def test_outage_during_save_is_503_and_the_cookie_is_kept(app: flask.Flask, client: FlaskClient,
                                                          store: OutageStore) -> None:
    @app.post("/set-as-the-store-fails/<value>")
    def set_as_the_store_fails(value: str) -> str:
        flask.session["value"] = value  # loads while the store is up
        store.down = True  # ...and it goes down before the commit
        return "ok"

    client.post("/set/before")
    cookie = client.get_cookie("session")
    assert cookie is not None
    response = client.post("/set-as-the-store-fails/lost")
    assert response.status_code == 503
    assert session_set_cookies(response) == []
    store.down = False
    assert client.get_cookie("session").value == cookie.value  # type: ignore[union-attr]
    assert client.get("/get").text == "before"


def test_routes_that_never_use_the_session_are_unaffected(client: FlaskClient,
                                                          store: OutageStore) -> None:
    client.post("/set/x")
    store.down = True
    assert client.get("/health").text == "fine"


def test_the_app_may_handle_outages_itself(app: flask.Flask, client: FlaskClient,
                                           store: OutageStore) -> None:
    @app.errorhandler(StoreUnavailable)
    def degraded(error: StoreUnavailable) -> tuple[str, int]:
        return "degraded mode", 200

    client.post("/set/x")
    store.down = True
    response = client.get("/get")
    assert (response.status_code, response.text) == (200, "degraded mode")
    assert session_set_cookies(response) == []


def test_a_failed_save_answers_with_the_apps_own_503_page(tmp_path: Path) -> None:
    """The store fails when the response is saved (a first visit's new session): the 503
    is the app's own StoreUnavailable handler's page, as for a failed load, not satchel's
    plain text; no cookie goes out."""
    from flask import Flask, session

    from satchel import Satchel, StoreUnavailable

    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32,
                      SATCHEL_STORE=f"sqlite:///{tmp_path}/not-mounted/sessions.sqlite3")

    @app.errorhandler(StoreUnavailable)
    def down(error: StoreUnavailable) -> tuple[str, int, dict[str, str]]:
        return "<h1>We will be right back</h1>", 503, {"Content-Type": "text/html"}

    Satchel(app)

    @app.post("/cart")
    def add() -> str:
        session["cart"] = ["book"]  # no cookie yet: nothing is loaded, the save creates
        return "added"

    response = app.test_client().post("/cart")
    assert response.status_code == 503
    assert response.get_data(as_text=True) == "<h1>We will be right back</h1>"
    assert response.headers["Content-Type"] == "text/html"
    assert response.headers["Retry-After"] == "5"
    assert "Set-Cookie" not in response.headers
