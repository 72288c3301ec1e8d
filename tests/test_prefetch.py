"""Prefetching on a real Redis and PostgreSQL: a path whose last request used its session has the
session's load sent when the request opens, and read when the view first uses it."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from flask import Flask, request, session
from flask.testing import FlaskClient

from satchel import Satchel
from tests.services import (
    cannot_test,
    closed_port,
    drop_keys,
    postgres_store,
    random_prefix,
    redis_client,
)
from tests.spy import PrefetchSpy

try:
    import redis
except ImportError:  # under CI a missing driver fails the run instead of skipping it
    cannot_test("the prefetch tests need redis-py: pip install -e '.[redis]'")

from satchel.stores.redis import RedisStore

SECRET = "s" * 32


def shop(store: object) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY=SECRET)
    Satchel(app, store=store)  # type: ignore[arg-type]

    @app.get("/set/<value>")
    def set_value(value: str) -> str:
        session["a"] = value
        return "ok"

    @app.get("/get")
    def get_value() -> str:
        return str(session.get("a"))

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.get("/maybe")
    def maybe() -> str:
        return str(session.get("a")) if request.args.get("use") == "1" else "skipped"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("the view failed before it used the session")

    return app


@pytest.fixture(params=["redis", "postgres"])
def spy(request: pytest.FixtureRequest) -> Iterator[PrefetchSpy]:
    if request.param == "postgres":
        with postgres_store() as store:
            yield PrefetchSpy(store)
        return
    with redis_client() as client:
        prefix = random_prefix()
        store = RedisStore(client, prefix=prefix)
        try:
            yield PrefetchSpy(store)
        finally:
            store.close()
            drop_keys(client, prefix)


@pytest.fixture
def client(spy: PrefetchSpy) -> FlaskClient:
    client = shop(spy).test_client()
    client.get("/set/1")
    return client


def test_a_path_that_used_the_session_prefetches_on_its_next_request(
        client: FlaskClient, spy: PrefetchSpy) -> None:
    client.get("/health")  # the last request did not use its session: /get, new, loads
    spy.reset()
    assert client.get("/get").text == "1"
    assert spy.names() == ["load"]
    spy.reset()
    assert client.get("/get").text == "1"
    assert spy.names() == ["prefetch", "result"]
    client.get("/set/2")
    spy.reset()
    assert client.get("/set/1").text == "ok"  # learned by the fixture's request
    assert spy.names() == ["prefetch", "result", "update"]
    assert client.get("/get").text == "1"


def test_a_new_path_follows_the_last_request_that_carried_a_cookie(
        client: FlaskClient, spy: PrefetchSpy) -> None:
    spy.reset()
    assert client.get("/set/2").text == "ok"  # never seen; the last request used its session
    assert spy.names() == ["prefetch", "result", "update"]
    client.get("/health")  # a cookie, and no use of the session
    spy.reset()
    assert client.get("/set/3").text == "ok"
    assert spy.names() == ["load", "update"]


def test_a_path_that_never_uses_the_session_costs_no_store_call_once_seen(
        client: FlaskClient, spy: PrefetchSpy) -> None:
    spy.reset()
    assert client.get("/health").text == "ok"  # new, after a request that used its session
    assert spy.names() == ["prefetch", "cancel"]
    spy.reset()
    for _ in range(3):
        assert client.get("/health").text == "ok"
    assert spy.names() == []


def test_a_path_that_stops_using_the_session_is_cancelled_once_then_forgotten(
        client: FlaskClient, spy: PrefetchSpy) -> None:
    client.get("/maybe?use=1")
    spy.reset()
    assert client.get("/maybe?use=0").text == "skipped"
    assert spy.names() == ["prefetch", "cancel"]
    spy.reset()
    assert client.get("/maybe?use=0").text == "skipped"
    assert spy.names() == []
    assert client.get("/get").text == "1"  # the cancelled reply answered nobody else


def test_a_view_that_fails_before_using_the_session_leaves_the_connection_in_step(
        client: FlaskClient, spy: PrefetchSpy) -> None:
    app = client.application
    app.config["TESTING"] = False  # the failure becomes a 500, as in production
    client.get("/boom")  # untouched: not learned
    app.view_functions["boom"] = lambda: (session.get("a"), 1 / 0)
    assert client.get("/boom").status_code == 500  # used the session: learned
    app.view_functions["boom"] = lambda: 1 / 0
    spy.reset()
    assert client.get("/boom").status_code == 500
    assert spy.names() == ["prefetch", "cancel"]
    for value in ("2", "3"):
        client.get(f"/set/{value}")
        assert client.get("/get").text == value


def test_what_is_remembered_is_bounded(client: FlaskClient, spy: PrefetchSpy) -> None:
    use = client.application.session_interface.session_use  # type: ignore[attr-defined]
    for n in range(4200):  # more paths than are remembered
        client.get(f"/junk/{n}")
    long_path = "/junk/" + "x" * 300
    client.get(long_path)
    assert len(use) == 4096 and "/junk/4199" in use and "/junk/0" not in use
    assert long_path not in use
    client.get("/set/2")
    spy.reset()
    assert client.get("/set/3").text == "ok"  # a new path after one that used its session
    assert spy.names() == ["prefetch", "result", "update"]


def test_prefetching_can_be_turned_off(client: FlaskClient, spy: PrefetchSpy) -> None:
    client.application.config["SATCHEL_PREFETCH"] = False
    client.get("/get")
    spy.reset()
    assert client.get("/get").text == "1"
    assert spy.names() == ["load"]


def test_a_forged_cookie_on_a_learned_path_reaches_no_store(
        client: FlaskClient, spy: PrefetchSpy, caplog: pytest.LogCaptureFixture) -> None:
    client.get("/get")
    cookie = client.get_cookie("session")
    assert cookie is not None
    client.set_cookie("session", cookie.value[:-1] + ("A" if cookie.value[-1] != "A" else "B"))
    spy.reset()
    with caplog.at_level(logging.WARNING, logger="satchel.security"):
        assert client.get("/get").text == "None"
    assert spy.names() == []
    assert len([r for r in caplog.records if "rejected session cookie" in r.message]) == 1


@pytest.mark.parametrize("server", ["redis", "postgres"])
def test_an_unreachable_store_on_a_learned_path_is_a_503(server: str) -> None:
    if server == "redis":
        store: object = RedisStore(redis.Redis(host="127.0.0.1", port=closed_port(),
                                               socket_connect_timeout=1))
    else:
        from satchel.stores.postgres import PostgresStore

        store = PostgresStore.from_url(f"postgresql://127.0.0.1:{closed_port()}/test",
                                       timeout=0.5, create_schema=False)
    app = shop(store)
    client = app.test_client()
    client.get("/get")  # no cookie: no store call, but /get is learned
    sid = "x" * 43
    client.set_cookie("session", app.session_interface.engine.sign(  # type: ignore[attr-defined]
        sid, False, app.session_interface.policy(app)))  # type: ignore[attr-defined]
    try:
        assert client.get("/get").status_code == 503
    finally:
        if server == "postgres":
            store.pool.close()  # type: ignore[attr-defined]
