"""Misconfiguration fails at init_app with a message naming the value and the fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask, session

from satchel import ConfigError, MemoryStore, Satchel, SQLiteStore


def make_app(tmp_path: Path, **config: object) -> Flask:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(SECRET_KEY="k" * 32, **config)
    return app


@pytest.mark.parametrize(("url", "message"), [
    ("redsi://localhost", "unknown scheme 'redsi'; expected one of sqlite, memory, redis"),
    ("redis://", "host"),
    ("postgresql:///test", "no host"),
    ("cookie://host", "takes no host"),
    ("sessions.sqlite3", "not a URL"),
    ("sqlite://", "three slashes"),
    ("sqlite://relative.db", "three slashes"),
])
def test_bad_store_url(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Satchel(make_app(tmp_path, SATCHEL_STORE=url))
    assert url in str(info.value)


def test_unusable_sqlite_path_names_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    url = f"sqlite:///{blocker}/sessions.sqlite3"
    with pytest.raises(ConfigError, match="cannot open") as info:
        Satchel(make_app(tmp_path, SATCHEL_STORE=url))
    assert str(blocker) in str(info.value)


def test_store_object_must_be_a_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a store"):
        Satchel(make_app(tmp_path), store=object())  # type: ignore[arg-type]


def test_path_object_is_refused_with_the_url_to_use(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sqlite:///"):
        Satchel(make_app(tmp_path, SATCHEL_STORE=tmp_path / "s.sqlite3"))


@pytest.mark.parametrize("value", ["10 minutes", -5, 0, timedelta(0), True])
def test_bad_timeouts(tmp_path: Path, value: object) -> None:
    with pytest.raises(ConfigError, match="SATCHEL_IDLE_TIMEOUT"):
        Satchel(make_app(tmp_path, SATCHEL_IDLE_TIMEOUT=value))
    with pytest.raises(ConfigError, match="SATCHEL_ABSOLUTE_TIMEOUT"):
        Satchel(make_app(tmp_path, SATCHEL_ABSOLUTE_TIMEOUT=value))


@pytest.mark.parametrize(("url", "relative"), [
    ("sqlite:///", "instance/sessions.sqlite3"),
    ("sqlite:///sub/s.db", "instance/sub/s.db"),
])
def test_sqlite_urls_relative_to_instance_folder(tmp_path: Path, url: str, relative: str) -> None:
    app = make_app(tmp_path, SATCHEL_STORE=url)
    Satchel(app)
    store = Satchel.store_of(app)
    assert isinstance(store, SQLiteStore)
    assert Path(store.path) == tmp_path / relative
    assert (tmp_path / relative).exists()


def test_absolute_sqlite_url(tmp_path: Path) -> None:
    app = make_app(tmp_path, SATCHEL_STORE=f"sqlite:///{tmp_path}/abs.sqlite3")
    Satchel(app)
    store = Satchel.store_of(app)
    assert isinstance(store, SQLiteStore) and store.path == f"{tmp_path}/abs.sqlite3"


def test_memory_url_and_store_argument_wins_over_config(tmp_path: Path) -> None:
    app = make_app(tmp_path, SATCHEL_STORE="memory://")
    Satchel(app)
    assert isinstance(Satchel.store_of(app), MemoryStore)
    mine = MemoryStore()
    app2 = make_app(tmp_path, SATCHEL_STORE="sqlite:///")
    Satchel(app2, store=mine)
    assert Satchel.store_of(app2) is mine


def test_timeouts_accept_timedelta_and_seconds_read_per_request(tmp_path: Path) -> None:
    from tests.clock import FakeClock

    clock = FakeClock()
    app = make_app(tmp_path, SATCHEL_IDLE_TIMEOUT=timedelta(minutes=10))
    Satchel(app, store=MemoryStore(clock=clock), clock=clock)

    @app.get("/")
    def index() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    client = app.test_client()
    assert client.get("/").text == "1"
    clock.advance(599)
    assert client.get("/").text == "2"
    app.config["SATCHEL_IDLE_TIMEOUT"] = 30
    clock.advance(31)
    assert client.get("/").text == "1"


def test_store_of_an_app_without_satchel() -> None:
    with pytest.raises(RuntimeError, match="Satchel"):
        Satchel.store_of(Flask(__name__))


def test_store_url_errors_never_show_a_password(tmp_path: Path) -> None:
    from satchel.urls import store_from_url

    with pytest.raises(ConfigError) as info:
        store_from_url("bogus://admin:s3cret-pass@db.internal/x", base_dir=str(tmp_path))
    assert "s3cret-pass" not in str(info.value) and "admin:***@db.internal" in str(info.value)
