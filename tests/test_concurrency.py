"""Overlapping requests on one session, on real threads, against each real shared store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from satchel import Satchel, SQLiteStore
from tests.services import drop_keys, postgres_store, random_prefix, redis_client

TIMEOUT = 10


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        yield SQLiteStore(tmp_path / "sessions.sqlite3")
        return
    if request.param == "postgres":
        with postgres_store() as store:
            yield store
        return
    from satchel.stores.redis import RedisStore

    with redis_client() as client:
        prefix = random_prefix()
        yield RedisStore(client, prefix=prefix)
        drop_keys(client, prefix)


@pytest.fixture
def app(store: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="k" * 32)
    Satchel(app, store=store)
    app.extensions["gates"] = {}

    @app.get("/set/<key>/<value>")
    def set_value(key: str, value: str) -> str:
        session[key] = value
        return "ok"

    @app.get("/slow-set/<key>/<value>")
    def slow_set(key: str, value: str) -> str:
        gates = app.extensions["gates"]
        session.get(key)  # load the session now, before the other request commits
        gates["loaded"].wait(TIMEOUT)
        gates["go"].wait(TIMEOUT)
        session[key] = value
        return "ok"

    @app.get("/logout")
    def logout() -> str:
        session.destroy()
        return "bye"

    @app.get("/dump")
    def dump() -> dict[str, Any]:
        return dict(session)

    return app


def clone(app: Flask, client: FlaskClient) -> FlaskClient:
    other = app.test_client()
    cookie = client.get_cookie("session")
    assert cookie is not None
    other.set_cookie("session", cookie.value)
    return other


def run(*jobs: Any) -> list[Any]:
    results: list[Any] = [None] * len(jobs)

    def target(i: int) -> None:
        results[i] = jobs[i]()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
        assert not thread.is_alive()
    return results


def test_overlapping_requests_setting_different_keys_both_survive(app: Flask) -> None:
    client = app.test_client()
    client.get("/set/user/alice")
    tab1, tab2 = clone(app, client), clone(app, client)
    app.extensions["gates"] = {"loaded": threading.Barrier(2), "go": threading.Event()}
    app.extensions["gates"]["go"].set()
    r1, r2 = run(lambda: tab1.get("/slow-set/cart/apple"), lambda: tab2.get("/slow-set/theme/dark"))
    assert (r1.status_code, r2.status_code) == (200, 200)
    assert client.get("/dump").json == {"user": "alice", "cart": "apple", "theme": "dark"}


def test_request_in_flight_after_logout_does_not_resurrect_the_session(app: Flask) -> None:
    client = app.test_client()
    client.get("/set/user/alice")
    slow, other = clone(app, client), clone(app, client)
    go = threading.Event()
    app.extensions["gates"] = {"loaded": threading.Barrier(2), "go": go}

    def logout_once_loaded() -> Any:
        app.extensions["gates"]["loaded"].wait(TIMEOUT)
        response = other.get("/logout")
        go.set()
        return response

    in_flight, logout = run(lambda: slow.get("/slow-set/cart/apple"), logout_once_loaded)
    assert logout.status_code == 200 and in_flight.status_code == 200
    assert "Set-Cookie" not in in_flight.headers  # the dead id is not handed back
    assert slow.get("/dump").json == {}  # replaying the old cookie: nothing
    assert client.get("/dump").json == {}
