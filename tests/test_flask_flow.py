"""The server-side request flow as a Flask app sees it."""

from __future__ import annotations

import logging
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from satchel import ConfigError, MemoryStore, Patch, Satchel, SQLiteStore
from satchel.ids import storage_key
from tests.clock import FakeClock
from tests.spy import SpyStore

DAY = 86400.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def spy(clock: FakeClock) -> SpyStore:
    return SpyStore(MemoryStore(clock=clock))


@pytest.fixture
def app(spy: SpyStore, clock: FakeClock) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="k" * 32)
    Satchel(app, store=spy, clock=clock)

    @app.get("/set/<key>/<value>")
    def set_value(key: str, value: str) -> str:
        session[key] = value
        return "ok"

    @app.get("/get/<key>")
    def get_value(key: str) -> str:
        return str(session.get(key))

    @app.get("/dump")
    def dump() -> dict[str, Any]:
        return dict(session)

    @app.get("/nothing")
    def nothing() -> str:
        return "nothing"

    @app.get("/append/<item>")
    def append(item: str) -> str:
        session.setdefault("cart", [])
        session["cart"].append(item)
        return "ok"

    @app.get("/mutate/<item>")
    def mutate(item: str) -> str:
        cart = session.get("cart")
        assert cart is not None
        cart.append(item)
        return "ok"

    @app.get("/login/<user>")
    def login(user: str) -> str:
        session["user"] = user
        session.regenerate()
        return "ok"

    @app.get("/regenerate")
    def regenerate() -> str:
        session.regenerate()
        return "ok"

    @app.get("/clear-and-regenerate")
    def clear_and_regenerate() -> str:
        session.clear()
        session.regenerate()
        return "ok"

    @app.get("/logout")
    def logout() -> str:
        session.destroy()
        return "bye"

    @app.get("/clear")
    def clear() -> str:
        session.clear()
        return "cleared"

    @app.get("/permanent")
    def permanent() -> str:
        session["p"] = 1
        session.permanent = True
        return "ok"

    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def stored(spy: SpyStore, cookie: str | None) -> Any:
    """The record the store holds for the session id in ``cookie``."""
    assert cookie is not None
    return spy.inner.load(storage_key(cookie.split(".")[0]))


def cookie_of(client: FlaskClient) -> str | None:
    cookie = client.get_cookie("session")
    return None if cookie is None else cookie.value


def set_cookie_header(response: Any) -> SimpleCookie:
    parsed: SimpleCookie = SimpleCookie()
    for header in response.headers.getlist("Set-Cookie"):
        parsed.load(header)
    return parsed


# -- laziness and writes ---------------------------------------------------------------------


def test_untouched_route_costs_no_store_call(client: FlaskClient, spy: SpyStore) -> None:
    client.get("/set/a/1")
    spy.reset()
    response = client.get("/nothing")
    assert spy.calls == []
    assert "Set-Cookie" not in response.headers
    assert "Vary" not in response.headers


def test_read_only_request_writes_nothing(client: FlaskClient, spy: SpyStore) -> None:
    client.get("/set/a/1")
    spy.reset()
    response = client.get("/get/a")
    assert response.text == "1"
    assert spy.names() == ["load"]
    assert "Set-Cookie" not in response.headers
    assert response.headers["Vary"] == "Cookie"


def test_empty_new_session_is_never_stored(client: FlaskClient, spy: SpyStore) -> None:
    response = client.get("/get/a")
    assert response.text == "None"
    assert spy.calls == []
    assert "Set-Cookie" not in response.headers
    assert len(spy.inner) == 0  # type: ignore[arg-type]


def test_commit_sends_only_changed_keys(client: FlaskClient, spy: SpyStore) -> None:
    client.get("/set/a/1")
    client.get("/set/b/2")
    spy.reset()
    client.get("/set/a/3")
    (patch,) = [arg for name, arg in spy.calls if name == "update"]
    assert dict(patch.set) == {"a": b'"3"'}
    assert patch.delete == frozenset() and not patch.clear
    assert client.get("/dump").json == {"a": "3", "b": "2"}


def test_setting_the_same_value_again_writes_no_field(client: FlaskClient, spy: SpyStore) -> None:
    client.get("/set/a/1")
    spy.reset()
    response = client.get("/set/a/1")
    # Flask re-sends the cookie of a modified session; the store first checks it is live.
    assert "Set-Cookie" in response.headers
    assert spy.names() == ["load", "update"]
    assert spy.calls[1][1] == Patch()


def test_nested_mutation_is_saved_without_modified_flag(client: FlaskClient) -> None:
    client.get("/append/apple")
    client.get("/mutate/pear")
    assert client.get("/dump").json == {"cart": ["apple", "pear"]}


def test_emptying_a_session_deletes_its_record(
    client: FlaskClient, spy: SpyStore, clock: FakeClock
) -> None:
    client.get("/set/a/1")
    cookie = cookie_of(client)
    assert len(spy.inner) == 1  # type: ignore[arg-type]
    response = client.get("/clear")
    assert stored(spy, cookie) is None
    assert set_cookie_header(response)["session"].value == ""
    assert cookie_of(client) is None
    # What stays is the tombstone (see satchel.tombstone), for the grace period only.
    clock.advance(61)
    spy.inner.purge_expired()  # type: ignore[attr-defined]
    assert len(spy.inner) == 0  # type: ignore[arg-type]


def test_no_hidden_keys_in_the_session(client: FlaskClient) -> None:
    client.get("/permanent")
    assert client.get("/dump").json == {"p": 1}


# -- ids, strict mode, rotation ------------------------------------------------------------------


def test_cookie_holds_a_signed_random_id_and_the_store_only_its_hash(
    client: FlaskClient, spy: SpyStore
) -> None:
    client.get("/set/a/1")
    value = cookie_of(client)
    assert value is not None
    sid = value.split(".")[0]
    assert len(sid) == 43
    records = spy.inner._records  # type: ignore[attr-defined]
    assert list(records) == [storage_key(sid)]
    assert sid not in repr(records)


def test_unknown_but_well_signed_id_is_never_adopted(
    app: Flask, client: FlaskClient, spy: SpyStore
) -> None:
    client.get("/set/a/1")
    planted = cookie_of(client)
    assert planted is not None
    victim = app.test_client()
    spy.inner.delete(storage_key(planted.split(".")[0]))
    victim.set_cookie("session", planted)
    victim.get("/set/b/2")
    issued = cookie_of(victim)
    assert issued is not None and issued != planted
    assert victim.get("/dump").json == {"b": "2"}


def test_regenerate_keeps_data_and_kills_the_old_id(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    client.get("/set/cart/x")
    before = cookie_of(client)
    client.get("/login/alice")
    after = cookie_of(client)
    assert before is not None and after is not None and before != after
    assert client.get("/dump").json == {"cart": "x", "user": "alice"}
    attacker = app.test_client()
    attacker.set_cookie("session", before)
    # Within the grace period the old id shows the session as it was, never the login...
    response = attacker.get("/set/user/mallory")
    assert "Set-Cookie" not in response.headers  # ...and keeps nothing written through it
    assert attacker.get("/dump").json == {"cart": "x"}
    assert client.get("/dump").json == {"cart": "x", "user": "alice"}
    clock.advance(61)  # then it is unknown
    assert attacker.get("/dump").json == {}


@pytest.mark.parametrize("path", ["/regenerate", "/clear-and-regenerate"])
def test_regenerate_on_empty_or_cleared_session(
    client: FlaskClient, spy: SpyStore, path: str
) -> None:
    assert client.get(path).status_code == 200  # new and empty: nothing to do
    client.get("/set/a/1")
    old = cookie_of(client)
    client.get(path)
    if path == "/regenerate":
        assert cookie_of(client) not in (None, old)
        assert client.get("/dump").json == {"a": "1"}
    else:
        assert cookie_of(client) is None
        assert stored(spy, old) is None


def test_destroy_deletes_record_and_expires_cookie_with_its_attributes(
    app: Flask, client: FlaskClient, spy: SpyStore
) -> None:
    app.config.update(SESSION_COOKIE_DOMAIN="example.com", SESSION_COOKIE_PATH="/shop",
                      SESSION_COOKIE_SECURE=True, SESSION_COOKIE_SAMESITE="Strict")
    client.get("/set/a/1", "https://www.example.com/shop/")
    set_attrs = set_cookie_header(client.get("/set/a/2", "https://www.example.com/shop/"))
    response = client.get("/logout", "https://www.example.com/shop/")
    deleted = set_cookie_header(response)["session"]
    assert deleted.value == ""
    assert deleted["expires"].startswith("Thu, 01 Jan 1970")
    for attribute in ("domain", "path", "secure", "samesite", "httponly"):
        assert deleted[attribute] == set_attrs["session"][attribute]
    assert len(spy.inner) == 0  # type: ignore[arg-type]


def test_destroy_then_write_starts_a_fresh_session(app: Flask, spy: SpyStore) -> None:
    @app.get("/switch")
    def switch() -> str:
        session.destroy()
        session["fresh"] = True
        return "ok"

    client = app.test_client()
    client.get("/set/a/1")
    old = cookie_of(client)
    client.get("/switch")
    assert cookie_of(client) not in (None, old)
    assert client.get("/dump").json == {"fresh": True}
    assert len(spy.inner) == 1  # type: ignore[arg-type]


def test_changing_secret_key_logs_everyone_out(app: Flask, client: FlaskClient) -> None:
    client.get("/set/a/1")
    app.secret_key = "another secret key, 32 bytes long"
    assert client.get("/dump").json == {}


def test_fallback_key_keeps_session_and_cookie_is_re_signed(
    app: Flask, client: FlaskClient
) -> None:
    client.get("/set/a/1")
    old_cookie = cookie_of(client)
    app.config["SECRET_KEY_FALLBACKS"] = [app.secret_key]
    app.secret_key = "the new secret key, 32 bytes long"
    response = client.get("/dump")
    assert response.json == {"a": "1"}
    new_cookie = cookie_of(client)
    assert new_cookie is not None and new_cookie != old_cookie
    assert new_cookie.split(".")[0] == old_cookie.split(".")[0]  # type: ignore[union-attr]
    app.config["SECRET_KEY_FALLBACKS"] = []
    assert client.get("/dump").json == {"a": "1"}
    # The old cookie, verified (and remembered) under the fallback, no longer is.
    fresh = app.test_client(use_cookies=False)
    assert fresh.get("/dump", headers={"Cookie": f"session={old_cookie}"}).json == {}


def test_no_secret_key_gives_flask_null_session(app: Flask) -> None:
    app.secret_key = None
    with app.test_request_context():
        assert session.get("a") is None
        with pytest.raises(RuntimeError, match="no secret key"):
            session["a"] = 1


# -- bad input ---------------------------------------------------------------------------


BAD_COOKIES = [
    "garbage",
    "",
    "x" * 5000,
    "ü" * 67,
    "A" * 43 + ".b" + "A" * 22,
    "A" * 43 + ".p" + "A" * 21,
    "A" * 43 + ".z" + "A" * 22,
    "A" * 42 + "!.b" + "A" * 22,
    "../../etc/passwd",
    "A" * 43 + ".b" + "A" * 21 + "=",
]


@pytest.mark.parametrize("bad", BAD_COOKIES, ids=range(len(BAD_COOKIES)))
def test_bad_cookie_is_an_empty_session_never_a_500(
    app: Flask, spy: SpyStore, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client(use_cookies=False)
    with caplog.at_level(logging.INFO, logger="satchel.security"):
        response = client.get("/dump", headers={"Cookie": f"session={bad}"})
    assert response.status_code == 200 and response.json == {}
    assert spy.calls == []  # garbage never reaches the store
    if bad:
        assert any(r.name == "satchel.security" for r in caplog.records)
    for record in caplog.records:
        assert bad not in record.getMessage() or len(bad) < 8


def test_tampered_cookie_is_rejected_and_logged_without_the_id(
    app: Flask, client: FlaskClient, caplog: pytest.LogCaptureFixture
) -> None:
    client.get("/set/a/1")
    good = cookie_of(client)
    assert good is not None
    sid = good.split(".")[0]
    flipped = ("B" if good[0] == "A" else "A") + good[1:]
    forged_flag = good[:44] + ("p" if good[44] == "b" else "b") + good[45:]
    for bad in (flipped, forged_flag, good[:-1], good + "A"):
        other = app.test_client()
        other.set_cookie("session", bad)
        with caplog.at_level(logging.INFO, logger="satchel.security"):
            assert other.get("/dump").json == {}
    assert caplog.records
    assert all(sid not in r.getMessage() and bad[:43] not in r.getMessage()
               for r in caplog.records)


def test_a_cookie_has_one_spelling(client: FlaskClient, app: Flask) -> None:
    """The MAC's last base64 character carries 4 spare bits; other spellings are refused."""
    client.get("/set/a/1")
    good = cookie_of(client)
    assert good is not None
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(good[-1])
    same_bytes = [alphabet[(last & ~0b1111) | spare] for spare in range(16)]
    accepted = []
    for char in same_bytes:
        other = app.test_client()
        other.set_cookie("session", good[:-1] + char)
        if other.get("/dump").json == {"a": "1"}:
            accepted.append(char)
    assert accepted == [good[-1]]


# -- timeouts ------------------------------------------------------------------------------


def test_idle_timeout_and_sliding_touch(app: Flask, client: FlaskClient, spy: SpyStore,
                                        clock: FakeClock) -> None:
    app.config["SATCHEL_IDLE_TIMEOUT"] = 1000
    client.get("/set/a/1")
    clock.advance(50)  # below the touch threshold (100 s): no write
    spy.reset()
    assert client.get("/get/a").text == "1"
    assert spy.names() == ["load"]
    clock.advance(60)  # 110 s since the last write: touch
    spy.reset()
    assert client.get("/get/a").text == "1"
    assert spy.names() == ["load", "update"]
    (_, patch) = spy.calls[1]
    assert patch.set == {} and patch.last_seen == clock.now
    clock.advance(999)  # within idle of the touch
    assert client.get("/get/a").text == "1"
    clock.advance(1000)
    assert client.get("/get/a").text == "None"


def test_a_write_moves_the_idle_deadline_only_when_a_touch_is_due(
        app: Flask, client: FlaskClient, spy: SpyStore, clock: FakeClock) -> None:
    app.config["SATCHEL_IDLE_TIMEOUT"] = 1000
    client.get("/set/a/1")
    clock.advance(50)  # below the touch threshold (100 s): the write carries the field only
    spy.reset()
    client.get("/set/a/2")
    (_, patch) = spy.calls[-1]
    assert patch.set == {"a": b'"2"'} and patch.last_seen is None and patch.expires_at is None
    clock.advance(60)  # 110 s since the last touch: the write touches too
    spy.reset()
    client.get("/set/a/3")
    (_, patch) = spy.calls[-1]
    assert patch.set == {"a": b'"3"'} and patch.last_seen == clock.now
    assert patch.expires_at == clock.now + 1000
    clock.advance(999)  # within idle of that touch: alive, and the write was kept
    assert client.get("/get/a").text == "3"
    clock.advance(1000)
    assert client.get("/get/a").text == "None"


def test_idle_timeout_shortened_in_config_applies_to_old_sessions(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    client.get("/set/a/1")
    clock.advance(120)
    app.config["SATCHEL_IDLE_TIMEOUT"] = 60
    assert client.get("/get/a").text == "None"


def test_absolute_timeout_kills_an_active_session(app: Flask, client: FlaskClient,
                                                  clock: FakeClock) -> None:
    app.config.update(SATCHEL_IDLE_TIMEOUT=1000, SATCHEL_ABSOLUTE_TIMEOUT=3000)
    client.get("/set/a/1")
    for _ in range(5):
        clock.advance(500)
        client.get("/set/b/x")
    assert client.get("/get/a").text == "1"  # 2500 s old, active
    clock.advance(500)
    assert client.get("/get/a").text == "None"


def test_permanent_cookie_expiry_is_capped_by_the_absolute_deadline(
    app: Flask, client: FlaskClient, clock: FakeClock
) -> None:
    app.config.update(SATCHEL_ABSOLUTE_TIMEOUT=3600)
    response = client.get("/permanent")
    cookie = set_cookie_header(response)["session"]
    from email.utils import parsedate_to_datetime

    expires = parsedate_to_datetime(cookie["expires"]).timestamp()
    assert expires == pytest.approx(clock.now + 3600, abs=1)


def test_untouched_request_sends_no_cookie_and_makes_no_store_call(
    client: FlaskClient, spy: SpyStore
) -> None:
    client.get("/permanent")
    spy.reset()
    response = client.get("/nothing")
    assert spy.calls == []
    # Nothing to refresh: the id may have been rotated meanwhile (a login in another tab),
    # and re-sending it would log the user out. Vary stays, as Flask's refresh would set it.
    assert "Set-Cookie" not in response.headers
    assert response.headers["Vary"] == "Cookie"


def test_read_of_a_permanent_session_checks_it_is_live_before_refreshing(
    app: Flask, client: FlaskClient, spy: SpyStore, clock: FakeClock
) -> None:
    client.get("/permanent")
    clock.advance(10)
    spy.reset()
    response = client.get("/get/p")  # within the touch interval: a liveness check, no write
    assert spy.names() == ["load", "update"] and spy.calls[1][1] == Patch()
    assert "Expires=" in response.headers["Set-Cookie"]
    clock.advance(DAY)  # the touch interval is min(idle / 10, 5 min)
    spy.reset()
    response = client.get("/get/p")
    assert spy.names() == ["load", "update"] and spy.calls[1][1].last_seen == clock.now
    assert "Expires=" in response.headers["Set-Cookie"]
    app.config["SESSION_REFRESH_EACH_REQUEST"] = False
    spy.reset()
    response = client.get("/get/p")
    assert spy.names() == ["load"] and "Set-Cookie" not in response.headers


# -- stores and apps ------------------------------------------------------------------------


def test_default_store_is_sqlite_in_the_instance_folder(tmp_path: Path) -> None:
    instance = tmp_path / "instance" / "nested"
    app = Flask(__name__, instance_path=str(instance))
    app.config["SECRET_KEY"] = "k" * 32
    Satchel(app)
    store = Satchel.store_of(app)
    assert isinstance(store, SQLiteStore)
    assert Path(store.path) == instance / "sessions.sqlite3"

    @app.get("/")
    def index() -> str:
        session["n"] = session.get("n", 0) + 1
        return str(session["n"])

    client = app.test_client()
    assert [client.get("/").text for _ in range(3)] == ["1", "2", "3"]


def test_several_apps_in_one_process_keep_separate_stores() -> None:
    extension = Satchel()
    apps = []
    for name in ("one", "two"):
        app = Flask(name)
        app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE="memory://")
        extension.init_app(app)

        @app.get("/")
        def index(name: str = name) -> str:
            session["app"] = name
            return name

        apps.append(app)
    for app in apps:
        app.test_client().get("/")
    stores = [Satchel.store_of(app) for app in apps]
    assert stores[0] is not stores[1]
    assert all(len(store) == 1 for store in stores)  # type: ignore[arg-type]
    assert apps[0].extensions["satchel"] is extension


def test_untouched_route_does_not_even_verify_the_cookie(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client(use_cookies=False)
    with caplog.at_level(logging.DEBUG, logger="satchel"):
        response = client.get("/nothing", headers={"Cookie": "session=forged"})
    assert response.status_code == 200
    assert caplog.records == []


def test_responses_that_set_the_cookie_are_private(client: FlaskClient) -> None:
    response = client.get("/set/a/1")
    assert "Set-Cookie" in response.headers
    assert response.headers["Cache-Control"] == "private"
    assert response.headers["Vary"] == "Cookie"


def test_invalid_samesite_fails_before_anything_is_stored(app: Flask, spy: SpyStore) -> None:
    app.config["SESSION_COOKIE_SAMESITE"] = "sometimes"
    with pytest.raises(ValueError, match="SESSION_COOKIE_SAMESITE 'sometimes'"):
        app.test_client().get("/set/a/1")
    assert len(spy.inner) == 0  # type: ignore[arg-type]


def test_grace_period_is_configurable_and_checked(clock: FakeClock) -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="k" * 32, SATCHEL_GRACE_PERIOD=5)
    Satchel(app, store=MemoryStore(clock=clock), clock=clock)

    @app.get("/set/<key>/<value>")
    def set_value(key: str, value: str) -> str:
        session[key] = value
        if key == "user":
            session.regenerate()  # type: ignore[attr-defined]
        return "ok"

    @app.get("/dump")
    def dump() -> dict[str, Any]:
        return dict(session)

    client = app.test_client()
    client.get("/set/cart/x")
    old = cookie_of(client)
    client.get("/set/user/alice")
    late = app.test_client()
    assert old is not None
    late.set_cookie("session", old)
    clock.advance(4)
    assert late.get("/dump").json == {"cart": "x"}
    clock.advance(2)
    assert late.get("/dump").json == {}
    for bad in (0, -1, "10s"):
        other = Flask(__name__)
        other.config.update(SECRET_KEY="k" * 32, SATCHEL_GRACE_PERIOD=bad)
        with pytest.raises(ConfigError, match="SATCHEL_GRACE_PERIOD"):
            Satchel(other, store=MemoryStore())
