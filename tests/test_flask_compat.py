"""Satchel against the session behaviour Flask's own test suite checks.

Flask 3.1's tests exercise its session machinery in about 45 places (the
cookie attributes, ``Vary``, permanence and refresh, key rotation, flashing,
the test client's ``session_transaction``, streaming, greenlets, async views,
the template global, the tagged serializer's special types, and the
``SessionInterface`` hooks). This module checks the same observable
behaviour, written afresh, against satchel with each of the stores a plain
clone has: ``MemoryStore``, ``SQLiteStore`` in a temporary folder, and client-side
``SealedCookies``.

Every test looks at what a client or a view can see: response headers and
bodies, cookie attributes, values read back in a *later* request (so they
went through the store, not just the in-memory session object).
"""

from __future__ import annotations

import json
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from typing import Any

import flask
import pytest
from flask.globals import request_ctx
from flask.testing import FlaskClient
from greenlet import greenlet
from markupsafe import Markup
from werkzeug.http import parse_date

from satchel import (
    MemoryStore,
    Satchel,
    SatchelSessionInterface,
    SealedCookies,
    SessionTooLarge,
    SQLiteStore,
    Tag,
    TaggedCodec,
)
from satchel.cookie_mode import CookieEngine
from tests.services import drop_keys, postgres_store, random_prefix, redis_client

pytestmark = pytest.mark.compat

SECRET = "compat secret key"
AppFactory = Callable[..., flask.Flask]


# -- fixtures ------------------------------------------------------------------


def _close(store: Any) -> None:
    """Release what a store holds open (SQLite keeps a connection per thread)."""
    close = getattr(store, "close", None)
    if callable(close):
        close()


@pytest.fixture(params=["memory", "sqlite", "cookie", "redis", "postgres"])
def make_store(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Callable[[], Any]]:
    made: list[Any] = []
    with ExitStack() as cleanup:

        def make() -> Any:
            if request.param == "memory":
                store: Any = MemoryStore()
            elif request.param == "cookie":
                store = SealedCookies()
            elif request.param == "redis":
                from satchel.stores.redis import RedisStore

                client = cleanup.enter_context(redis_client())
                prefix = random_prefix()
                cleanup.callback(drop_keys, client, prefix)
                store = RedisStore(client, prefix=prefix)
            elif request.param == "postgres":
                store = cleanup.enter_context(postgres_store())
            else:
                store = SQLiteStore(tmp_path / f"sessions-{len(made)}.sqlite3")
            made.append(store)
            return store

        yield make
        for store in made:
            _close(store)


@pytest.fixture
def make_app(make_store: Callable[[], Any]) -> AppFactory:
    """A Flask app with satchel installed: TESTING on, SECRET_KEY set, ``config`` on top."""

    def make(codec: TaggedCodec | None = None, **config: Any) -> flask.Flask:
        app = flask.Flask(__name__)
        app.config.update(TESTING=True, SECRET_KEY=SECRET)
        app.config.update(config)
        if codec is None:
            Satchel(app, store=make_store())
        else:
            Satchel(app, store=make_store(), codec=codec)
        return app

    return make


@pytest.fixture
def app(make_app: AppFactory) -> flask.Flask:
    return make_app()


@pytest.fixture
def client(app: flask.Flask) -> FlaskClient:
    return app.test_client()


# -- helpers -------------------------------------------------------------------


def is_cookie_mode(app: flask.Flask) -> bool:
    interface = app.session_interface
    return isinstance(interface, SatchelSessionInterface) and isinstance(interface.engine,
                                                                         CookieEngine)


def session_cookies(response: Any, name: str = "session") -> list[str]:
    """The Set-Cookie headers of ``response`` that set cookie ``name``."""
    return [h for h in response.headers.getlist("Set-Cookie") if h.split("=", 1)[0] == name]


def the_cookie(response: Any, name: str = "session") -> dict[str, Any]:
    """Parse the single Set-Cookie header for ``name``.

    Returns ``{"value": ..., <lower-cased attribute>: value or True}``.
    """
    headers = session_cookies(response, name)
    assert len(headers) == 1, f"expected one Set-Cookie for {name!r}, got {headers!r}"
    first, *attributes = (part.strip() for part in headers[0].split(";"))
    parsed: dict[str, Any] = {"value": first.split("=", 1)[1]}
    for attribute in attributes:
        key, eq, value = attribute.partition("=")
        parsed[key.lower()] = value if eq else True
    return parsed


def expires_of(cookie: dict[str, Any]) -> datetime:
    expires = parse_date(cookie["expires"])
    assert expires is not None, cookie
    return expires


def assert_vary_cookie_once(response: Any, expected: str = "Cookie") -> None:
    values = response.headers.getlist("Vary")
    assert len(values) == 1, values
    assert values[0] == expected


# -- accessed / modified and Vary -----------------------------------------------


def test_accessed_and_modified_tracking(app: flask.Flask, client: FlaskClient) -> None:
    @app.post("/")
    def store_value() -> str:
        flask.session["value"] = flask.request.form["value"]
        return "value set"

    @app.get("/")
    def read_value() -> str:
        return str(flask.session.get("value", "None"))

    @app.get("/nothing")
    def nothing() -> str:
        return ""

    def state() -> tuple[bool, bool]:
        session = request_ctx._session  # not the proxy: that would mark it accessed
        assert session is not None
        return session.accessed, session.modified

    with client:
        rv = client.get("/nothing")
        assert "cookie" not in rv.vary
        assert not session_cookies(rv)
        assert state() == (False, False)

    with client:
        rv = client.post("/", data={"value": "42"})
        assert rv.text == "value set"
        assert "cookie" in rv.vary
        assert session_cookies(rv)
        assert state() == (True, True)

    with client:
        rv = client.get("/")
        assert rv.text == "42"
        assert "cookie" in rv.vary
        assert state() == (True, False)

    with client:
        rv = client.get("/nothing")
        assert rv.text == ""
        assert "cookie" not in rv.vary
        assert state() == (False, False)


def _vary_app(app: flask.Flask) -> None:
    @app.route("/set")
    def set_value() -> str:
        flask.session["test"] = "test"
        return ""

    @app.route("/get")
    def get() -> str:
        return str(flask.session.get("test"))

    @app.route("/getitem")
    def getitem() -> str:
        return str(flask.session["test"])

    @app.route("/setdefault")
    def setdefault() -> str:
        return str(flask.session.setdefault("test", "default"))

    @app.route("/clear")
    def clear() -> str:
        flask.session.clear()
        return ""

    @app.route("/vary-cookie-already")
    def vary_cookie_already() -> flask.Response:
        response = flask.Response()
        response.vary.add("Cookie")
        flask.session["test"] = "test"
        return response

    @app.route("/vary-other")
    def vary_other() -> flask.Response:
        response = flask.Response()
        response.vary.update(("Accept-Encoding", "Accept-Language"))
        flask.session["test"] = "test"
        return response

    @app.route("/untouched")
    def untouched() -> str:
        return ""


@pytest.mark.parametrize(
    ("path", "body", "vary"),
    [
        ("/set", "", "Cookie"),
        ("/get", "test", "Cookie"),
        ("/getitem", "test", "Cookie"),
        ("/setdefault", "test", "Cookie"),
        ("/clear", "", "Cookie"),
        ("/vary-cookie-already", "", "Cookie"),
        ("/vary-other", "", "Accept-Encoding, Accept-Language, Cookie"),
        ("/untouched", "", None),
    ],
)
def test_vary_cookie_exactly_once(app: flask.Flask, client: FlaskClient, path: str,
                                  body: str, vary: str | None) -> None:
    _vary_app(app)
    client.get("/set")  # the client now holds a (browser-session) cookie
    rv = client.get(path)
    assert rv.text == body
    if vary is None:
        assert "Vary" not in rv.headers
    else:
        assert_vary_cookie_once(rv, vary)


def test_no_vary_without_any_session(app: flask.Flask, client: FlaskClient) -> None:
    _vary_app(app)
    rv = client.get("/untouched")
    assert "Vary" not in rv.headers
    assert not session_cookies(rv)


def test_refreshed_permanent_cookie_varies(app: flask.Flask, client: FlaskClient) -> None:
    @app.get("/login")
    def login() -> str:
        flask.session["user_id"] = 1
        flask.session.permanent = True
        return ""

    @app.get("/ignored")
    def ignored() -> str:
        return ""

    rv = client.get("/login")
    assert_vary_cookie_once(rv)
    rv = client.get("/ignored")
    # The view never touched the session. Flask re-sends the permanent cookie (with Vary);
    # satchel keeps the Vary header, and re-sends the cookie only in cookie mode: a
    # server-side id may have been rotated meanwhile (see Engine.commit).
    assert_vary_cookie_once(rv)
    assert bool(session_cookies(rv)) == is_cookie_mode(app)


# -- cookie attributes -------------------------------------------------------------


def _set_and_clear_routes(app: flask.Flask) -> None:
    @app.route("/")
    def index() -> str:
        flask.session["testing"] = 42
        return "Hello World"

    @app.route("/clear")
    def clear() -> str:
        flask.session.pop("testing", None)
        return "Goodbye World"


def test_cookie_path_from_application_root(app: flask.Flask, client: FlaskClient) -> None:
    app.config.update(APPLICATION_ROOT="/foo")
    _set_and_clear_routes(app)
    rv = client.get("/", "http://example.com:8080/foo")
    assert rv.text == "Hello World"
    assert the_cookie(rv)["path"] == "/foo"


def test_cookie_path_under_script_name(app: flask.Flask, client: FlaskClient) -> None:
    inner = app.wsgi_app
    seen: list[str] = []

    def mounted_at_bar(environ: dict[str, Any], start_response: Any) -> Any:
        environ["SCRIPT_NAME"] = "/bar"
        return inner(environ, start_response)

    app.wsgi_app = mounted_at_bar  # type: ignore[method-assign]
    app.config.update(APPLICATION_ROOT="/bar")

    @app.route("/")
    def index() -> str:
        seen.append(flask.request.script_root)
        flask.session["testing"] = 42
        return "Hello World"

    rv = client.get("/", "http://example.com:8080/")
    assert rv.text == "Hello World"
    assert seen == ["/bar"]
    assert the_cookie(rv)["path"] == "/bar"


def test_cookie_settings_on_set_and_on_delete(app: flask.Flask, client: FlaskClient) -> None:
    app.config.update(
        SERVER_NAME="www.example.com:8080",
        APPLICATION_ROOT="/test",
        SESSION_COOKIE_DOMAIN=".example.com",
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SECURE=True,
        SESSION_COOKIE_PARTITIONED=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_PATH="/",
    )
    _set_and_clear_routes(app)

    def check(cookie: dict[str, Any]) -> None:
        assert cookie["domain"].lstrip(".") == "example.com"
        assert cookie["path"] == "/"
        assert cookie["secure"] is True
        assert "httponly" not in cookie
        assert cookie["samesite"] == "Lax"
        assert cookie["partitioned"] is True

    rv = client.get("/", "https://www.example.com:8080/test/")
    assert rv.text == "Hello World"
    cookie = the_cookie(rv)
    assert cookie["value"]
    check(cookie)

    rv = client.get("/clear", "https://www.example.com:8080/test/")
    assert rv.text == "Goodbye World"
    deleted = the_cookie(rv)
    assert deleted["value"] == ""
    assert expires_of(deleted) < datetime.now(timezone.utc)
    check(deleted)


def test_default_cookie_attributes_on_set_and_on_delete(app: flask.Flask,
                                                        client: FlaskClient) -> None:
    _set_and_clear_routes(app)
    rv = client.get("/")
    cookie = the_cookie(rv)
    assert cookie["httponly"] is True
    assert cookie["path"] == "/"
    for absent in ("domain", "secure", "samesite", "partitioned", "expires"):
        assert absent not in cookie, absent

    rv = client.get("/clear")
    deleted = the_cookie(rv)
    assert deleted["value"] == ""
    assert deleted["httponly"] is True
    assert deleted["path"] == "/"
    assert expires_of(deleted) < datetime.now(timezone.utc)
    # The client dropped it: the next request carries no session cookie.
    assert client.get_cookie("session") is None


def test_invalid_samesite_raises(app: flask.Flask, client: FlaskClient) -> None:
    _set_and_clear_routes(app)
    app.config.update(SESSION_COOKIE_SAMESITE="invalid")
    with pytest.raises(ValueError, match=r"(?i)samesite"):
        client.get("/")


@pytest.mark.parametrize(("setting", "expected"),
                         [(None, None), ("Strict", "Strict"), ("Lax", "Lax")])
def test_samesite_values(app: flask.Flask, client: FlaskClient, setting: str | None,
                         expected: str | None) -> None:
    _set_and_clear_routes(app)
    app.config.update(SESSION_COOKIE_SAMESITE=setting)
    cookie = the_cookie(client.get("/"))
    assert cookie.get("samesite") == expected


def test_dynamic_cookie_name_from_interface_subclass(app: flask.Flask) -> None:
    class PathAwareInterface(SatchelSessionInterface):
        def get_cookie_name(self, app: flask.Flask) -> str:
            if flask.request.path.endswith("dynamic_cookie"):
                return "dynamic_cookie_name"
            return super().get_cookie_name(app)

    interface = app.session_interface
    assert isinstance(interface, SatchelSessionInterface)
    app.session_interface = PathAwareInterface(interface.engine)

    @app.post("/set")
    @app.post("/set_dynamic_cookie")
    def set_value() -> str:
        flask.session["value"] = flask.request.form["value"]
        return "value set"

    @app.get("/get")
    @app.get("/get_dynamic_cookie")
    def get_value() -> str:
        return str(flask.session.get("value", "None"))

    client = app.test_client()
    rv = client.post("/set", data={"value": "42"})
    assert rv.text == "value set"
    assert session_cookies(rv, "session")
    rv = client.post("/set_dynamic_cookie", data={"value": "616"})
    assert rv.text == "value set"
    assert session_cookies(rv, "dynamic_cookie_name")
    assert client.get("/get").text == "42"
    assert client.get("/get_dynamic_cookie").text == "616"


# -- no secret key: the null session -----------------------------------------------


def test_missing_secret_key_gives_null_session(app: flask.Flask) -> None:
    app.secret_key = None
    with app.test_request_context():
        assert flask.session.get("missing_key") is None
        with pytest.raises(RuntimeError, match="session is unavailable"):
            flask.session["foo"] = 42
        with pytest.raises(RuntimeError, match="session is unavailable"):
            flask.session.pop("foo")


def test_missing_secret_key_through_the_client(app: flask.Flask, client: FlaskClient) -> None:
    app.secret_key = None

    @app.get("/read")
    def read() -> str:
        return repr(flask.session.get("x"))

    @app.get("/write")
    def write() -> str:
        flask.session["x"] = 1
        return ""

    rv = client.get("/read")
    assert rv.text == "None"
    assert not session_cookies(rv)
    with pytest.raises(RuntimeError, match="session is unavailable"):
        client.get("/write")


# -- key rotation ----------------------------------------------------------------


def test_secret_key_fallbacks(app: flask.Flask, client: FlaskClient) -> None:
    @app.post("/")
    def set_value() -> str:
        flask.session["a"] = 1
        return ""

    @app.get("/")
    def dump() -> dict[str, Any]:
        return dict(flask.session)

    app.secret_key = "0 key"
    app.config["SECRET_KEY_FALLBACKS"] = ["-1 key", "-2 key"]
    client.post("/")
    assert client.get("/").json == {"a": 1}

    # A new key that does not list the old one: the cookie no longer verifies.
    app.secret_key = "? key"
    assert client.get("/").json == {}

    # The old key is a fallback again: the same session is back.
    app.secret_key = "+1 key"
    app.config["SECRET_KEY_FALLBACKS"] = ["0 key", "-1 key"]
    assert client.get("/").json == {"a": 1}


# -- permanence, expiry, refresh ---------------------------------------------------


def test_permanent_cookie_expires_after_lifetime(app: flask.Flask, client: FlaskClient) -> None:
    permanent = True

    @app.route("/")
    def index() -> str:
        flask.session["test"] = 42
        flask.session.permanent = permanent
        return ""

    @app.route("/test")
    def test() -> str:
        return str(flask.session.permanent)

    before = datetime.now(timezone.utc).replace(microsecond=0)
    rv = client.get("/")
    after = datetime.now(timezone.utc)
    expires = expires_of(the_cookie(rv))
    lifetime = app.permanent_session_lifetime
    assert lifetime == timedelta(days=31)
    assert before + lifetime - timedelta(seconds=2) <= expires <= after + lifetime

    assert client.get("/test").text == "True"

    permanent = False
    rv = client.get("/")
    assert "expires" not in the_cookie(rv)
    assert client.get("/test").text == "False"


@pytest.mark.parametrize("lifetime", [42, timedelta(hours=2)])
def test_permanent_session_lifetime_setting(make_app: AppFactory,
                                            lifetime: int | timedelta) -> None:
    app = make_app(PERMANENT_SESSION_LIFETIME=lifetime)
    expected = lifetime if isinstance(lifetime, timedelta) else timedelta(seconds=lifetime)
    assert app.permanent_session_lifetime == expected

    @app.route("/")
    def index() -> str:
        flask.session["x"] = 1
        flask.session.permanent = True
        return ""

    before = datetime.now(timezone.utc).replace(microsecond=0)
    rv = app.test_client().get("/")
    after = datetime.now(timezone.utc)
    expires = expires_of(the_cookie(rv))
    assert before + expected - timedelta(seconds=2) <= expires <= after + expected


@pytest.mark.parametrize(
    ("permanent", "refresh", "expect_cookie"),
    [(True, True, True), (True, False, False), (False, True, False), (False, False, False)],
)
def test_refresh_each_request_matrix(make_app: AppFactory, permanent: bool, refresh: bool,
                                     expect_cookie: bool) -> None:
    app = make_app(SESSION_REFRESH_EACH_REQUEST=refresh)

    @app.route("/bump")
    def bump() -> str:
        value = flask.session["foo"] = flask.session.get("foo", 0) + 1
        flask.session.permanent = permanent
        return str(value)

    @app.route("/read")
    def read() -> str:
        return str(flask.session.get("foo", 0))

    @app.route("/untouched")
    def untouched() -> str:
        return ""

    with app.test_client() as client:
        for expected in ("1", "2", "3"):
            rv = client.get("/bump")
            assert rv.text == expected
            assert session_cookies(rv)
        rv = client.get("/read")
        assert rv.text == "3"
        assert bool(session_cookies(rv)) == expect_cookie
        if expect_cookie:
            assert "expires" in the_cookie(rv)
        # Flask re-sends a permanent cookie on every request. Server-side, satchel does not
        # for a request that never used its session: the id could have been rotated by a
        # login meanwhile, and only the store can tell.
        rv = client.get("/untouched")
        assert bool(session_cookies(rv)) == (expect_cookie and is_cookie_mode(app))
        assert client.get("/read").text == "3"


def test_changes_in_after_request_are_saved(app: flask.Flask, client: FlaskClient) -> None:
    @app.after_request
    def modify_session(response: flask.Response) -> flask.Response:
        flask.session["foo"] = 42
        return response

    @app.route("/")
    def dump() -> str:
        return repr(flask.session.get("foo"))

    assert client.get("/").text == "None"
    assert client.get("/").text == "42"


# -- value types -------------------------------------------------------------------

NOW = datetime.now(timezone.utc).replace(microsecond=0)
SPECIAL_VALUES = [
    pytest.param((1, 2, 3), id="tuple"),
    pytest.param([(1, 2, 3)], id="list-of-tuple"),
    pytest.param(b"\xff", id="bytes"),
    pytest.param(Markup("<html>"), id="markup"),
    pytest.param(uuid.uuid4(), id="uuid"),
    pytest.param(NOW, id="aware-datetime"),
    pytest.param({" t": "not-a-tuple"}, id="dict-like-tuple-tag"),
    pytest.param({" t": (1, 2, 3)}, id="dict-like-tuple-tag-holding-tuple"),
    pytest.param({" t__": "not-a-tuple"}, id="dict-near-tag"),
    pytest.param({" t__": b"a"}, id="dict-near-tag-holding-bytes"),
    pytest.param({" di": "not-a-dict"}, id="dict-like-dict-tag"),
    pytest.param({" di": " di"}, id="dict-like-dict-tag-2"),
    pytest.param({"x": (1, 2, 3), "y": 4}, id="dict-with-tuple"),
]


@pytest.mark.parametrize("value", SPECIAL_VALUES)
def test_special_types_round_trip(app: flask.Flask, client: FlaskClient, value: Any) -> None:
    @app.route("/set")
    def set_value() -> tuple[str, int]:
        flask.session["v"] = value
        return "", 204

    @app.route("/touch")
    def touch() -> str:
        return ""

    assert client.get("/set").status_code == 204
    with client:
        client.get("/touch")  # a later request: the value comes back from the store
        loaded = flask.session["v"]
    assert loaded == value
    assert type(loaded) is type(value)
    if isinstance(value, datetime):
        assert loaded.tzinfo is not None
        assert loaded.utcoffset() == timedelta(0)
    if isinstance(value, list):
        assert type(loaded[0]) is tuple
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(loaded[key]) is type(item)


def test_all_special_types_in_one_session(app: flask.Flask, client: FlaskClient) -> None:
    the_uuid = uuid.uuid4()
    values = {
        "t": (1, 2, 3), "b": b"\xff", "m": Markup("<html>"), "u": the_uuid, "d": NOW,
        "t_tag": {" t": "not-a-tuple"}, "di_t_tag": {" t__": "not-a-tuple"},
        "di_tag": {" di": "not-a-dict"},
    }

    @app.route("/")
    def set_all() -> tuple[str, int]:
        flask.session.update(values)
        return "", 204

    client.get("/")
    with client.session_transaction() as sess:
        assert dict(sess) == values
        assert type(sess["b"]) is bytes
        assert type(sess["m"]) is Markup
        assert type(sess["t"]) is tuple


class Foo:
    def __init__(self, data: Any) -> None:
        self.data = data


def test_custom_tag_round_trips(make_app: AppFactory) -> None:
    codec = TaggedCodec()
    codec.register(Tag("f", lambda v: isinstance(v, Foo), lambda v: v.data, Foo))
    app = make_app(codec=codec)

    @app.route("/set")
    def set_value() -> str:
        flask.session["foo"] = Foo(("bar", b"\x00"))
        return ""

    @app.route("/get")
    def get_value() -> str:
        foo = flask.session["foo"]
        assert isinstance(foo, Foo)
        return repr(foo.data)

    client = app.test_client()
    client.get("/set")
    assert client.get("/get").text == repr(("bar", b"\x00"))


def test_tag_registration_rules() -> None:
    codec = TaggedCodec()
    # A key that is taken (or reserved for the dict escape) is refused.
    for key in ("t", "di"):
        with pytest.raises(ValueError):
            codec.register(Tag(key, lambda v: False, lambda v: v, lambda v: v))
    # A tag registered first wins over the built-in ones; later ones come after.
    codec.register(Tag("pair", lambda v: isinstance(v, tuple) and len(v) == 2, list,
                       lambda v: ("pair", *v)), first=True)
    assert json.loads(codec.encode((1, 2))) == {" pair": [1, 2]}
    assert codec.decode(codec.encode((1, 2))) == ("pair", 1, 2)
    assert codec.decode(codec.encode((1, 2, 3))) == (1, 2, 3)


def test_large_session_never_sends_a_cookie_the_browser_drops(
        app: flask.Flask, client: FlaskClient) -> None:
    """Server-side: the cookie stays small. Client-side: SessionTooLarge, never a lost session."""
    app.config["MAX_COOKIE_SIZE"] = 100
    big = "x" * 10_000
    client_side = isinstance(app.session_interface.engine, CookieEngine)

    @app.route("/set")
    def set_value() -> str:
        flask.session["big"] = big
        return ""

    @app.route("/get")
    def get_value() -> str:
        return str(len(flask.session.get("big", "")))

    @app.route("/other")
    def other() -> flask.Response:
        response = flask.Response("", status=204)
        response.set_cookie("foo", "bar" * 100)
        return response

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if client_side:
            with pytest.raises(SessionTooLarge, match=r"would be \d+ bytes.*limit of 100"):
                client.get("/set")
            assert client.get("/get").text == "0"
        else:
            rv = client.get("/set")
            assert len(the_cookie(rv)["value"]) < 100
            assert client.get("/get").text == "10000"
        assert [str(w.message) for w in caught] == []
        # MAX_COOKIE_SIZE itself is in force: an oversized cookie of the app's warns.
        client.get("/other")
        assert any("cookie is too large" in str(w.message) for w in caught)


# -- flashing ----------------------------------------------------------------------


def test_modified_set_before_any_other_use_resends_the_cookie(app: flask.Flask,
                                                             client: FlaskClient) -> None:
    """``session.modified = True`` as a view's only use of the session: Flask re-sends the
    cookie; so does satchel, with the session's data unchanged."""

    @app.post("/")
    def store_value() -> str:
        flask.session["value"] = "42"
        return "set"

    @app.get("/touch")
    def touch() -> str:
        flask.session.modified = True
        return "touched"

    @app.get("/")
    def read_value() -> str:
        return str(flask.session.get("value"))

    client.post("/")
    rv = client.get("/touch")
    assert rv.status_code == 200 and rv.text == "touched"
    assert session_cookies(rv)
    assert "cookie" in rv.vary
    assert client.get("/").text == "42"
    rv = app.test_client().get("/touch")  # no session yet: nothing to store, as Flask
    assert rv.status_code == 200 and not session_cookies(rv)


def test_flash_marks_session_modified(app: flask.Flask) -> None:
    with app.test_request_context():
        assert not flask.session.modified
        flask.flash("Zap")
        flask.session.modified = False
        flask.flash("Zip")
        assert flask.session.modified
        assert list(flask.get_flashed_messages()) == ["Zap", "Zip"]


HELLO = "Hello World"
EM = Markup("<em>Testing</em>")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, [HELLO, HELLO, EM]),
        ({"with_categories": True}, [("message", HELLO), ("error", HELLO), ("warning", EM)]),
        ({"category_filter": ["message"], "with_categories": True}, [("message", HELLO)]),
        ({"category_filter": ["message", "warning"], "with_categories": True},
         [("message", HELLO), ("warning", EM)]),
        ({"category_filter": ["message", "warning"]}, [HELLO, EM]),
    ],
)
def test_flashed_messages_survive_the_store(app: flask.Flask, client: FlaskClient,
                                            kwargs: dict[str, Any], expected: list[Any]) -> None:
    got: list[list[Any]] = []

    @app.route("/")
    def index() -> str:
        flask.flash(HELLO)
        flask.flash(HELLO, "error")
        flask.flash(Markup("<em>Testing</em>"), "warning")
        return ""

    @app.route("/read")
    def read() -> str:
        got.append(list(flask.get_flashed_messages(**kwargs)))
        return ""

    client.get("/")
    client.get("/read")
    assert got[0] == expected
    messages = [m[1] if isinstance(m, tuple) else m for m in got[0]]
    # The Markup message comes back as Markup, not as a plain str.
    assert [type(m) for m in messages] == [Markup if m == EM else str for m in messages]
    client.get("/read")  # consumed: the next request sees none
    assert got[1] == []


def test_flash_signal(app: flask.Flask) -> None:
    @app.route("/")
    def index() -> flask.Response:
        flask.flash("This is a flash message", category="notice")
        return flask.redirect("/other")

    @app.route("/other")
    def other() -> str:
        return json.dumps(flask.get_flashed_messages(with_categories=True))

    recorded: list[tuple[str, str]] = []

    def record(sender: flask.Flask, message: str, category: str) -> None:
        recorded.append((message, category))

    flask.message_flashed.connect(record, app)
    try:
        client = app.test_client()
        with client.session_transaction():
            rv = client.get("/")
            assert rv.status_code == 302
            assert recorded == [("This is a flash message", "notice")]
        rv = client.get("/other")
        assert json.loads(rv.text) == [["notice", "This is a flash message"]]
    finally:
        flask.message_flashed.disconnect(record, app)


# -- the test client -----------------------------------------------------------------


def test_redirect_keeps_session(app: flask.Flask, client: FlaskClient) -> None:
    @app.route("/redirect")
    def redirect() -> flask.Response:
        flask.session["redirect"] = True
        return flask.redirect("/target")

    @app.route("/target")
    def target() -> str:
        flask.session["target"] = True
        return "target"

    with client:
        rv = client.get("/redirect", follow_redirects=True)
        assert rv.text == "target"
        assert flask.session["redirect"] is True
        assert flask.session["target"] is True
    with client.session_transaction() as sess:
        assert dict(sess) == {"redirect": True, "target": True}


def test_session_transaction(app: flask.Flask, client: FlaskClient) -> None:
    @app.route("/")
    def index() -> str:
        return str(flask.session["foo"])

    with client:
        with client.session_transaction() as sess:
            assert len(sess) == 0
            sess["foo"] = [42]
            assert len(sess) == 1
        rv = client.get("/")
        assert rv.text == "[42]"
        with client.session_transaction() as sess:
            assert len(sess) == 1
            assert sess["foo"] == [42]
            sess["foo"].append(43)  # an in-place change is saved too
    assert client.get("/").text == "[42, 43]"


def test_session_transaction_keeps_outer_context(app: flask.Flask,
                                                 client: FlaskClient) -> None:
    with app.test_request_context():
        client.get("/")
        outer = flask.request._get_current_object()  # type: ignore[attr-defined]
        assert outer is not None
        with client.session_transaction():
            assert flask.request._get_current_object() is outer  # type: ignore[attr-defined]
        assert flask.request._get_current_object() is outer  # type: ignore[attr-defined]


def test_session_transaction_needs_cookies(app: flask.Flask) -> None:
    client = app.test_client(use_cookies=False)
    with pytest.raises(TypeError, match="Cookies are disabled"):
        with client.session_transaction():
            pass


def test_session_transaction_without_secret_key(app: flask.Flask) -> None:
    app.secret_key = None
    with app.test_client() as client:
        with pytest.raises(RuntimeError, match="Session backend did not open a session"):
            with client.session_transaction():
                pass


# -- streaming, async, greenlets, templates ------------------------------------------


def test_stream_with_context_keeps_session(app: flask.Flask, client: FlaskClient) -> None:
    @app.route("/")
    def index() -> flask.Response:
        flask.session["test"] = "flask"

        @flask.stream_with_context
        def gen() -> Iterator[str]:
            yield flask.session["test"]

        return flask.Response(gen())

    rv = client.get("/")
    assert rv.text == "flask"
    assert session_cookies(rv)


def test_stream_reads_session_the_view_never_touched(app: flask.Flask,
                                                     client: FlaskClient) -> None:
    @app.route("/set")
    def set_value() -> str:
        flask.session["test"] = "stored"
        return ""

    @app.route("/stream")
    def stream() -> flask.Response:
        @flask.stream_with_context
        def gen() -> Iterator[str]:
            yield "<"
            yield str(flask.session.get("test"))
            yield ">"

        return flask.Response(gen())

    client.get("/set")
    assert client.get("/stream").text == "<stored>"


def test_async_view_with_streamed_response(app: flask.Flask, client: FlaskClient) -> None:
    @app.route("/")
    async def index() -> flask.Response:
        flask.session["test"] = "flask"

        @flask.stream_with_context
        def gen() -> Iterator[str]:
            yield flask.session["test"]

        return flask.Response(gen())

    client.get("/").close()  # closed without reading the stream
    assert client.get("/").text == "flask"
    with client:
        client.get("/").close()
    with client:
        assert client.get("/").text == "flask"


def test_greenlet_with_copied_request_context(app: flask.Flask, client: FlaskClient) -> None:
    greenlets: list[greenlet] = []

    @app.route("/")
    def index() -> str:
        flask.session["fizz"] = "buzz"
        ctx = request_ctx.copy()

        def later() -> str:
            assert not flask.request
            assert not flask.current_app
            with ctx:
                assert flask.request.path == "/"
                assert flask.request.args["foo"] == "bar"
                assert flask.current_app == app
                fizz = str(flask.session.get("fizz"))
            assert not flask.request
            return fizz

        greenlets.append(greenlet(later))
        return "Hello World!"

    rv = client.get("/?foo=bar")
    assert rv.text == "Hello World!"
    assert greenlets[0].switch() == "buzz"


def test_greenlet_with_copy_current_request_context(app: flask.Flask,
                                                    client: FlaskClient) -> None:
    greenlets: list[greenlet] = []

    @app.route("/")
    def index() -> str:
        flask.session["fizz"] = "buzz"

        @flask.copy_current_request_context
        def later() -> str:
            assert flask.request.path == "/"
            assert flask.request.args["foo"] == "bar"
            assert flask.current_app == app
            return str(flask.session.get("fizz"))

        greenlets.append(greenlet(later))
        return "Hello World!"

    rv = client.get("/?foo=bar")
    assert rv.text == "Hello World!"
    assert greenlets[0].switch() == "buzz"


def test_session_is_a_template_global(app: flask.Flask, client: FlaskClient) -> None:
    @app.route("/")
    def index() -> str:
        flask.g.foo = 23
        flask.session["test"] = "aha"
        return flask.render_template_string(
            "{{ request.args.foo }} {{ g.foo }} {{ config.DEBUG }} {{ session.test }}"
        )

    @app.route("/again")
    def again() -> str:
        return flask.render_template_string("[{{ session.test }}]")

    assert client.get("/?foo=42").text.split() == ["42", "23", "False", "aha"]
    assert client.get("/again").text == "[aha]"


# -- the SessionInterface hooks ----------------------------------------------------


def test_error_in_open_session_pops_the_context(app: flask.Flask) -> None:
    class SessionError(Exception):
        pass

    class FailingInterface(SatchelSessionInterface):
        def open_session(self, app: flask.Flask, request: flask.Request) -> Any:
            raise SessionError()

    interface = app.session_interface
    assert isinstance(interface, SatchelSessionInterface)
    app.session_interface = FailingInterface(interface.engine)
    app.testing = False  # let Flask turn the error into a 500
    reached: list[bool] = []

    @app.route("/")
    def index() -> str:
        reached.append(True)
        return ""

    app.logger.disabled = True  # Flask logs the unhandled error; keep the output quiet
    try:
        response = app.test_client().get("/")
    finally:
        app.logger.disabled = False
    assert response.status_code == 500
    assert reached == []
    assert not flask.request
    assert not flask.current_app


def test_open_session_may_match_the_request(app: flask.Flask) -> None:
    endpoints: list[str | None] = []

    class MatchingInterface(SatchelSessionInterface):
        def open_session(self, app: flask.Flask, request: flask.Request) -> Any:
            request_ctx.match_request()
            endpoints.append(request.endpoint)
            return super().open_session(app, request)

    interface = app.session_interface
    assert isinstance(interface, SatchelSessionInterface)
    app.session_interface = MatchingInterface(interface.engine)

    @app.get("/")
    def index() -> str:
        flask.session["n"] = flask.session.get("n", 0) + 1
        return str(flask.session["n"])

    client = app.test_client()
    assert client.get("/").text == "1"
    assert client.get("/").text == "2"
    assert endpoints == ["index", "index"]


FIRST_USES: dict[str, tuple[Callable[[Any], object], dict[str, str]]] = {
    "modified": (lambda s: setattr(s, "modified", True), {"a": "1", "b": "2"}),
    "permanent": (lambda s: setattr(s, "permanent", True), {"a": "1", "b": "2"}),
    "clear": (lambda s: s.clear(), {}),
    "pop": (lambda s: s.pop("a"), {"b": "2"}),
    "popitem": (lambda s: s.popitem(), {"a": "1"}),
    "del": (lambda s: s.__delitem__("b"), {"a": "1"}),
    "setdefault": (lambda s: s.setdefault("c", "3"), {"a": "1", "b": "2", "c": "3"}),
    "update": (lambda s: s.update(a="9"), {"a": "9", "b": "2"}),
    "set": (lambda s: s.__setitem__("a", "8"), {"a": "8", "b": "2"}),
    "len": (lambda s: len(s), {"a": "1", "b": "2"}),
    "contains": (lambda s: "a" in s, {"a": "1", "b": "2"}),
    "iter": (lambda s: list(s), {"a": "1", "b": "2"}),
    "items": (lambda s: list(s.items()), {"a": "1", "b": "2"}),
    "copy": (lambda s: s.copy(), {"a": "1", "b": "2"}),
}


@pytest.mark.parametrize("use", sorted(FIRST_USES))
def test_first_use_of_a_stored_session(app: flask.Flask, client: FlaskClient, use: str) -> None:
    """Every way a view can first use its session, as the request's only use of it: each
    answers as Flask's own session would (none meets change tracking not yet made on a
    lazily loaded session), and the stored data ends as that operation leaves it."""
    operation, expected = FIRST_USES[use]

    @app.post("/fill")
    def fill() -> str:
        flask.session["a"], flask.session["b"] = "1", "2"
        return "ok"

    @app.post("/use")
    def first_use() -> str:
        operation(flask.session)
        return "ok"

    @app.get("/dump")
    def dump() -> dict[str, Any]:
        return {key: flask.session[key] for key in flask.session if not key.startswith("_")}

    client.post("/fill")
    assert client.post("/use").status_code == 200
    assert client.get("/dump").get_json() == expected
