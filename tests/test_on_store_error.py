"""SATCHEL_ON_STORE_ERROR, with stores that are really unreachable (no mocks).

PostgreSQL and Redis on a loopback port nothing listens on, SQLite with its
folder moved away. "fail" (the default) answers 503; "anonymous" serves an
empty session that is never saved, and a response whose save failed goes out
without the session cookie.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import flask
import pytest

from satchel import Satchel, SQLiteStore
from satchel.errors import ConfigError
from satchel.ids import new_id
from tests.modes import mode_app
from tests.services import LOOPBACK, closed_port, postgres_store, redis_client

DOWN_MODES = ("sqlite", "redis", "postgres")


@contextmanager
def down_store(mode: str, folder: Path) -> Iterator[Any]:
    """A store of ``mode`` that cannot reach its data."""
    if mode == "sqlite":
        data = folder / "data"
        data.mkdir()
        store = SQLiteStore(data / "sessions.sqlite3")
        data.rename(folder / "away")
        store.close()  # a worker thread opening its connection now (reads check once a second)
        try:
            yield store
        finally:
            store.close()
        return
    if mode == "redis":
        with redis_client():  # the driver is installed, or cannot_test says why
            pass
        from satchel.stores.redis import RedisStore

        store = RedisStore.from_url(f"redis://{LOOPBACK}:{closed_port()}/0")
    else:
        with postgres_store():
            pass
        from satchel.stores.postgres import PostgresStore

        store = PostgresStore.from_url(f"postgresql://postgres@{LOOPBACK}:{closed_port()}/test",
                                       create_schema=False, timeout=0.2)
    try:
        yield store
    finally:
        store.close()


def build_app(store: Any, **config: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, **config)
    Satchel(app, store=store)

    @app.post("/set/<value>")
    def set_value(value: str) -> str:
        flask.session["value"] = value
        return "ok"

    @app.get("/get")
    def get_value() -> str:
        return str(flask.session.get("value", "-"))

    @app.post("/logout")
    def logout() -> str:
        flask.session.destroy()  # type: ignore[attr-defined]
        return "bye"

    return app


def signed_cookie(app: flask.Flask) -> str:
    """A cookie this app signed, for a session the unreachable store would hold."""
    interface: Any = app.session_interface
    return str(interface.engine.sign(new_id(), False, interface.policy(app)))


def session_cookies(response: Any) -> list[str]:
    return [h for h in response.headers.getlist("Set-Cookie") if h.startswith("session=")]


@pytest.mark.parametrize("mode", DOWN_MODES)
def test_fail_is_the_default_and_answers_503(mode: str, tmp_path: Path) -> None:
    with down_store(mode, tmp_path) as store:
        client = build_app(store).test_client()
        assert client.post("/set/x").status_code == 503  # the save of a new session
        client.set_cookie("session", signed_cookie(client.application))
        response = client.get("/get")  # the load
        assert response.status_code == 503 and session_cookies(response) == []


@pytest.mark.parametrize("mode", DOWN_MODES)
def test_anonymous_serves_an_empty_session_when_the_load_fails(
        mode: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with down_store(mode, tmp_path) as store:
        app = build_app(store, SATCHEL_ON_STORE_ERROR="anonymous")
        client = app.test_client()
        client.set_cookie("session", signed_cookie(app))
        with caplog.at_level(logging.ERROR, logger="satchel"):
            response = client.get("/get")
        assert (response.status_code, response.text) == (200, "-")
        assert session_cookies(response) == []  # the browser keeps its cookie for later
        assert "serving an empty session" in caplog.text
        response = client.post("/set/x")  # a change to the anonymous session: never saved
        assert (response.status_code, session_cookies(response)) == (200, [])


@pytest.mark.parametrize("mode", DOWN_MODES)
def test_anonymous_sends_no_cookie_when_the_save_fails(
        mode: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with down_store(mode, tmp_path) as store:
        client = build_app(store, SATCHEL_ON_STORE_ERROR="anonymous").test_client()
        with caplog.at_level(logging.ERROR, logger="satchel"):
            response = client.post("/set/x")  # no cookie: no load; the create fails
        assert (response.status_code, response.text) == (200, "ok")
        assert session_cookies(response) == []
        assert "changes are lost" in caplog.text


def test_the_session_is_back_with_the_store(tmp_path: Path) -> None:
    """SQLite's folder moved away and back: what was stored before is there, and nothing
    the anonymous requests did was written."""
    data = tmp_path / "data"
    data.mkdir()
    store = SQLiteStore(data / "sessions.sqlite3")
    try:
        client = build_app(store, SATCHEL_ON_STORE_ERROR="anonymous").test_client()
        client.post("/set/before")
        data.rename(tmp_path / "away")
        response = client.post("/set/during")  # the write notices the file is gone
        assert (response.status_code, session_cookies(response)) == (200, [])
        assert client.get("/get").text == "-"
        (tmp_path / "away").rename(data)
        assert client.get("/get").text == "before"
    finally:
        store.close()


def expired(response: Any) -> bool:
    cookies = session_cookies(response)
    return len(cookies) == 1 and "Expires=Thu, 01 Jan 1970" in cookies[0]


@pytest.mark.parametrize("mode", DOWN_MODES)
def test_anonymous_logout_expires_the_cookie_when_the_load_fails(mode: str,
                                                                 tmp_path: Path) -> None:
    with down_store(mode, tmp_path) as store:
        app = build_app(store, SATCHEL_ON_STORE_ERROR="anonymous")
        client = app.test_client()
        client.set_cookie("session", signed_cookie(app))
        response = client.post("/logout")
        assert response.status_code == 200 and expired(response)


def test_anonymous_logout_expires_the_cookie_when_the_delete_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    store = SQLiteStore(data / "sessions.sqlite3")
    try:
        client = build_app(store, SATCHEL_ON_STORE_ERROR="anonymous").test_client()
        client.post("/set/before")
        data.rename(tmp_path / "away")
        response = client.post("/logout")  # loads (reads check once a second); delete fails
        assert response.status_code == 200 and expired(response)
    finally:
        store.close()


@pytest.mark.parametrize("value", ["Fail", "503", "", "anon", 0, True, ["fail"]])
def test_an_unknown_value_is_refused_at_init_app(value: object) -> None:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_ON_STORE_ERROR=value)
    with pytest.raises(ConfigError, match=r"SATCHEL_ON_STORE_ERROR.*'fail'.*'anonymous'"):
        Satchel(app, store="memory://")


@pytest.mark.parametrize("mode", ["memory", "cookie"])
def test_stores_that_cannot_fail_accept_both_values(mode: str, tmp_path: Path) -> None:
    from tests.clock import FakeClock

    with ExitStack() as cleanup:
        app = mode_app(mode, FakeClock(), tmp_path, cleanup, SATCHEL_ON_STORE_ERROR="anonymous")

        @app.post("/set")
        def set_value() -> str:
            flask.session["value"] = "kept"
            return "ok"

        @app.get("/get")
        def get_value() -> str:
            return str(flask.session.get("value", "-"))

        client = app.test_client()
        client.post("/set")
        assert client.get("/get").text == "kept"
