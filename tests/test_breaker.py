"""The breaker, SATCHEL_STORE_TIMEOUT, the client-side wait bound, and starting while down."""

from __future__ import annotations

import socket
import threading
from datetime import timedelta

import pytest
from flask import Flask, session

from satchel import Satchel
from satchel.breaker import Breaker
from satchel.errors import ConfigError, StoreUnavailable
from tests.services import closed_port, need_module


def test_a_healthy_breaker_lets_calls_through_without_probing() -> None:
    breaker = Breaker("store")
    assert not breaker.down


def test_while_a_probe_runs_other_callers_fail_at_once_and_a_passed_probe_closes_it() -> None:
    breaker = Breaker("<Store x>")
    breaker.trip("ConnectionError: refused")
    inside, release = threading.Event(), threading.Event()
    probes: list[str] = []

    def slow_probe() -> None:
        probes.append("slow")
        inside.set()
        release.wait(10)

    prober = threading.Thread(target=breaker.enter, args=(slow_probe,))
    prober.start()
    assert inside.wait(10)
    with pytest.raises(StoreUnavailable, match=r"<Store x> unavailable .*refused"):
        breaker.enter(lambda: probes.append("second"))
    release.set()
    prober.join(10)
    assert probes == ["slow"] and not breaker.down
    breaker.enter(lambda: probes.append("none"))  # up: nothing runs
    assert probes == ["slow"]


def test_a_failed_probe_keeps_it_down_and_the_next_caller_probes_again() -> None:
    breaker = Breaker("store")
    breaker.trip("down")

    def failing() -> None:
        breaker.trip("still down")
        raise StoreUnavailable("still down")

    with pytest.raises(StoreUnavailable, match="still down"):
        breaker.enter(failing)
    assert breaker.down
    breaker.enter(lambda: None)
    assert not breaker.down


@pytest.mark.parametrize("value", [0, -1, "3", float("nan"), float("inf"), timedelta(0)])
def test_store_timeout_must_be_a_positive_duration(value: object) -> None:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE="memory://",
                      SATCHEL_STORE_TIMEOUT=value)
    with pytest.raises(ConfigError, match="SATCHEL_STORE_TIMEOUT"):
        Satchel(app)


def test_wait_bounded_gives_up_when_the_server_never_answers() -> None:
    need_module("psycopg")
    from satchel.stores.postgres.timed import WaitTimeout, wait_bounded

    def wants_to_read() -> object:  # a psycopg generator: wait for readable, then done
        yield 1
        return "answered"

    left, right = socket.socketpair()
    with left, right:
        with pytest.raises(WaitTimeout, match=r"0\.05 s"):
            wait_bounded(wants_to_read(), left.fileno(), 0.05)
        right.sendall(b"x")
        assert wait_bounded(wants_to_read(), left.fileno(), 5) == "answered"


@pytest.mark.parametrize("scheme", ["postgresql://postgres@127.0.0.1:{port}/test",
                                    "redis://127.0.0.1:{port}/0"])
def test_the_app_starts_while_its_store_is_down_and_answers_503(
        scheme: str, caplog: pytest.LogCaptureFixture) -> None:
    need_module("psycopg" if scheme.startswith("postgresql") else "redis")
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE=scheme.format(port=closed_port()),
                      SATCHEL_STORE_TIMEOUT=0.5)
    Satchel(app)

    @app.get("/")
    def index() -> str:
        session["x"] = 1
        return "ok"

    @app.get("/plain")
    def plain() -> str:
        return "plain"

    try:
        client = app.test_client()
        assert client.get("/").status_code == 503
        assert client.get("/plain").status_code == 200
    finally:
        Satchel.store_of(app).close()  # type: ignore[attr-defined]


def test_postgres_started_while_down_creates_its_table_when_the_server_is_back() -> None:
    need_module("psycopg")
    import uuid

    from satchel.store import Record
    from satchel.stores.postgres import PostgresStore
    from tests.faults import FaultProxy
    from tests.test_store_faults import postgres_target, proxied_postgres_url

    table = f"satchel_started_down_{uuid.uuid4().hex[:12]}"
    with FaultProxy(postgres_target()) as proxy:
        proxy.refuse()
        store = PostgresStore.from_url(proxied_postgres_url(proxy.port), table=table,
                                       timeout=0.5)
        try:
            with pytest.raises(StoreUnavailable):
                store.load("k" * 64)
            proxy.accept()
            store.create("k" * 64, Record({"a": b"1"}, 1.0, 1.0, 4e9))
            loaded = store.load("k" * 64)
            assert loaded is not None and loaded.fields == {"a": b"1"}
        finally:
            with store.pool.connection() as conn:
                conn.execute(f"DROP TABLE IF EXISTS {table}")
            store.close()
