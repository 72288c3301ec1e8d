"""Unsafe keys are refused at start-up, and on the first request after a config change.

``SECRET_KEY_FALLBACKS`` given as a ``str`` (each character became a key), an
empty key, a key that is not ``str``/``bytes`` (``True`` became the byte
``\\x00``): ConfigError naming the key and the fix, in server-side and cookie
mode. Short keys and a missing ``SECRET_KEY`` are logged, once.
"""

from __future__ import annotations

import contextvars
import logging
import secrets
from typing import Any

import pytest
from flask import Flask, has_request_context, session
from flask.testing import FlaskClient

from satchel import ConfigError, MemoryStore, Satchel, SealedCookies
from satchel.keys import KeyRing
from satchel.sealed import Sealer

GOOD_KEY = "a good secret key, well over 32 bytes long"
MODES = ["memory://", "cookie://"]


def make_app(store: str = "memory://", *, install: bool = True, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY=GOOD_KEY, SATCHEL_STORE=store)
    app.config.update(config)

    @app.post("/login/<user>")
    def login(user: str) -> str:
        session["user"] = user
        return "ok"

    @app.get("/whoami")
    def whoami() -> str:
        return str(session.get("user", "nobody"))

    if install:
        Satchel(app)
    return app


def cookie_of(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


# Each bad config, the words its message must hold, and what it must never show.
BAD_CONFIGS: list[tuple[dict[str, Any], list[str], str | None]] = [
    ({"SECRET_KEY_FALLBACKS": "3f9a0c17be42d865"}, ["SECRET_KEY_FALLBACKS", "str", "list",
                                                    "FLASK_SECRET_KEY_FALLBACKS"],
     "3f9a0c17be42d865"),
    ({"SECRET_KEY_FALLBACKS": b"an old key as bytes"}, ["SECRET_KEY_FALLBACKS", "bytes", "list"],
     "an old key"),
    ({"SECRET_KEY_FALLBACKS": ""}, ["SECRET_KEY_FALLBACKS", "str", "list"], None),
    ({"SECRET_KEY_FALLBACKS": [""]}, ["SECRET_KEY_FALLBACKS[0]", "empty"], None),
    ({"SECRET_KEY_FALLBACKS": [GOOD_KEY, b""]}, ["SECRET_KEY_FALLBACKS[1]", "empty"], GOOD_KEY),
    ({"SECRET_KEY_FALLBACKS": [True]}, ["SECRET_KEY_FALLBACKS[0]", "bool"], None),
    ({"SECRET_KEY_FALLBACKS": [None]}, ["SECRET_KEY_FALLBACKS[0]", "None"], None),
    ({"SECRET_KEY_FALLBACKS": {GOOD_KEY}}, ["SECRET_KEY_FALLBACKS", "set", "list"], GOOD_KEY),
    ({"SECRET_KEY": True}, ["SECRET_KEY", "bool", "from_prefixed_env"], None),
    ({"SECRET_KEY": 123456}, ["SECRET_KEY", "int", "token_hex"], "123456"),
    ({"SECRET_KEY": 0}, ["SECRET_KEY", "int"], None),
    ({"SECRET_KEY": False}, ["SECRET_KEY", "bool"], None),
    ({"SECRET_KEY": 1.5}, ["SECRET_KEY", "float"], "1.5"),
    ({"SECRET_KEY": bytearray(GOOD_KEY.encode())}, ["SECRET_KEY", "bytearray", "bytes("],
     GOOD_KEY),
    ({"SECRET_KEY": memoryview(GOOD_KEY.encode())}, ["SECRET_KEY", "memoryview"], GOOD_KEY),
]
BAD_IDS = [f"{key}={value!r}"[:40] for config, _, _ in BAD_CONFIGS
           for key, value in config.items()]


def check_message(err: ConfigError, words: list[str], hidden: str | None) -> None:
    message = str(err)
    for word in words:
        assert word in message, (word, message)
    if hidden is not None:
        assert hidden not in message


@pytest.mark.parametrize("store", MODES)
@pytest.mark.parametrize(("config", "words", "hidden"), BAD_CONFIGS, ids=BAD_IDS)
def test_init_app_refuses_unsafe_keys(store: str, config: dict[str, Any], words: list[str],
                                      hidden: str | None) -> None:
    app = make_app(store, install=False, **config)
    with pytest.raises(ConfigError) as info:
        Satchel(app)
    check_message(info.value, words, hidden)
    assert "satchel" not in app.extensions


@pytest.mark.parametrize("store", MODES)
@pytest.mark.parametrize(("config", "words", "hidden"), BAD_CONFIGS, ids=BAD_IDS)
def test_first_request_after_a_config_change_refuses_unsafe_keys(
        store: str, config: dict[str, Any], words: list[str], hidden: str | None) -> None:
    app = make_app(store)
    client = app.test_client()
    client.post("/login/alice")
    good = dict(app.config)
    app.config.update(config)
    for request in (lambda: client.get("/whoami"), lambda: client.post("/login/bob")):
        with pytest.raises(ConfigError) as info:
            request()
        check_message(info.value, words, hidden)
    app.config.update({key: good[key] for key in config})  # a valid config works again
    assert client.get("/whoami").text == "alice"


@pytest.mark.parametrize("store", MODES)
def test_unsafe_key_is_a_500_outside_testing(store: str) -> None:
    app = make_app(store)
    app.config.update(TESTING=False, SECRET_KEY_FALLBACKS="3f9a0c17be42d865")
    assert app.test_client().get("/whoami").status_code == 500


@pytest.mark.parametrize("store", MODES)
def test_session_transaction_refuses_unsafe_keys(store: str) -> None:
    app = make_app(store)
    app.config["SECRET_KEY"] = True

    def transaction() -> None:
        with app.test_client().session_transaction() as sess:
            sess["user"] = "mallory"

    # In a copy of the context: Flask's push, which opens the session, left the request
    # context pushed when that raised (wsgi_app pops it; session_transaction does not).
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        contextvars.copy_context().run(transaction)
    assert not has_request_context()


@pytest.mark.parametrize("store", MODES)
@pytest.mark.parametrize("fallbacks", [None, [], (), ["old key, 32 bytes or more, really"],
                                       ("old key, 32 bytes or more, really", b"\x01" * 32)])
def test_valid_fallbacks_keep_working(store: str, fallbacks: Any) -> None:
    app = make_app(store, SECRET_KEY_FALLBACKS=fallbacks)
    client = app.test_client()
    client.post("/login/alice")
    assert client.get("/whoami").text == "alice"


@pytest.mark.parametrize("secret", [b"\x00" * 32, "é" * 16])
def test_bytes_and_non_ascii_keys_are_keys(secret: str | bytes) -> None:
    client = make_app("cookie://", SECRET_KEY=secret).test_client()
    client.post("/login/alice")
    assert client.get("/whoami").text == "alice"


# -- the forgery that str fallbacks allowed --------------------------------------------------


def forged_cookie(key: str) -> str:
    """A cookie-mode session saying user=admin, sealed under ``key`` (what an attacker can do)."""
    forger = make_app("cookie://", SECRET_KEY=key)
    client = forger.test_client()
    client.post("/login/admin")
    return cookie_of(client)


def test_str_fallbacks_no_longer_let_a_one_character_key_forge_a_session() -> None:
    hex_key = secrets.token_hex(16)  # FLASK_SECRET_KEY_FALLBACKS=<hex>, as the demo reads it
    with pytest.raises(ConfigError, match="SECRET_KEY_FALLBACKS"):
        Satchel(make_app("cookie://", install=False, SECRET_KEY_FALLBACKS=hex_key))
    victim = make_app("cookie://")
    victim.config["SECRET_KEY_FALLBACKS"] = hex_key  # changed after init_app
    for character in "0123456789abcdef":  # each hex digit was a key: at most 16 tries
        client = victim.test_client()
        client.set_cookie("session", forged_cookie(character))
        with pytest.raises(ConfigError):
            client.get("/whoami")
    victim.config["SECRET_KEY_FALLBACKS"] = [hex_key]  # the list it should have been
    for character in "0123456789abcdef":
        client = victim.test_client()
        client.set_cookie("session", forged_cookie(character))
        assert client.get("/whoami").text == "nobody"


def test_key_ring_and_sealer_refuse_a_str_of_fallbacks() -> None:
    for build in (lambda: KeyRing(GOOD_KEY, "abc", purpose="p"),  # type: ignore[arg-type]
                  lambda: Sealer(GOOD_KEY, "abc", purpose="p")):  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="SECRET_KEY_FALLBACKS"):
            build()
    for bad in (True, 7, b"", ""):
        with pytest.raises(ConfigError, match="SECRET_KEY"):
            KeyRing(bad, purpose="p")  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="SECRET_KEY"):
            Sealer(bad, purpose="p")  # type: ignore[arg-type]


# -- the demo reads FLASK_-prefixed environment variables ------------------------------------


def test_demo_refuses_unsafe_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.shop.app import create_app

    monkeypatch.setenv("FLASK_SATCHEL_STORE", "cookie://")
    monkeypatch.setenv("FLASK_SECRET_KEY", "true")  # from_prefixed_env(): JSON true
    with pytest.raises(ConfigError, match="SECRET_KEY is a bool"):
        create_app({"TESTING": True})
    monkeypatch.setenv("FLASK_SECRET_KEY", "123456")
    with pytest.raises(ConfigError, match="SECRET_KEY is an int"):
        create_app({"TESTING": True})
    monkeypatch.delenv("FLASK_SECRET_KEY")
    monkeypatch.setenv("FLASK_SECRET_KEY_FALLBACKS", secrets.token_hex(16))
    with pytest.raises(ConfigError, match="FLASK_SECRET_KEY_FALLBACKS='\\[\"old key\"\\]'"):
        create_app({"TESTING": True})


def test_demo_takes_fallbacks_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    from examples.shop.app import create_app

    old_key, new_key = secrets.token_hex(32), secrets.token_hex(32)
    monkeypatch.setenv("FLASK_SATCHEL_STORE", "cookie://")
    monkeypatch.setenv("FLASK_SECRET_KEY", old_key)
    old = create_app({"TESTING": True}).test_client()
    old.post("/login", data={"username": "demo", "password": "demo"})
    monkeypatch.setenv("FLASK_SECRET_KEY", new_key)
    monkeypatch.setenv("FLASK_SECRET_KEY_FALLBACKS", f'["{old_key}"]')
    app = create_app({"TESTING": True})
    assert app.config["SECRET_KEY_FALLBACKS"] == [old_key]
    client = app.test_client()
    client.set_cookie("session", cookie_of(old))
    assert "Logged in as <strong>demo</strong>" in client.get("/").text


# -- what is logged ------------------------------------------------------------------------


def records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("store", MODES)
@pytest.mark.parametrize("unset", [None, "", b""])
def test_missing_secret_key_is_logged_once_and_sessions_stay_null(
        store: str, unset: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app = make_app(store, install=False, SECRET_KEY=unset)
    Satchel(app)
    [record] = records(caplog, "satchel")
    assert "SECRET_KEY is not set" in record.getMessage()
    assert "disabled" in record.getMessage()
    client = app.test_client()
    assert client.get("/whoami").text == "nobody"
    with pytest.raises(RuntimeError, match="secret key"):
        client.post("/login/alice")  # Flask's null session refuses writes
    assert len(records(caplog, "satchel")) == 1
    app.config["SECRET_KEY"] = GOOD_KEY  # set later: sessions work
    client.post("/login/alice")
    assert client.get("/whoami").text == "alice"


def test_a_set_key_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    client = make_app("cookie://", SECRET_KEY_FALLBACKS=["x" * 32]).test_client()
    client.post("/login/alice")
    assert records(caplog, "satchel") == records(caplog, "satchel.security") == []


@pytest.mark.parametrize("store", MODES)
def test_short_keys_are_logged_once_per_key_ring(store: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app = make_app(store, SECRET_KEY="test key")
    [record] = records(caplog, "satchel.security")
    message = record.getMessage()
    assert "SECRET_KEY (8 bytes)" in message and "32" in message
    assert "test key" not in message
    client = app.test_client()
    for _ in range(3):
        client.post("/login/alice")
        assert client.get("/whoami").text == "alice"
    assert len(records(caplog, "satchel.security")) == 1  # init_app's record only

    app.config["SECRET_KEY_FALLBACKS"] = [GOOD_KEY, "old"]  # a new ring: logged once more
    client.get("/whoami")
    client.get("/whoami")
    new = records(caplog, "satchel.security")[1:]
    assert len(new) == 1
    assert "SECRET_KEY (8 bytes), SECRET_KEY_FALLBACKS[1] (3 bytes)" in new[0].getMessage()
    assert "test key" not in new[0].getMessage() and "old" not in new[0].getMessage()

    app.config["SECRET_KEY_FALLBACKS"] = None  # the first ring again: already said
    app.config["SATCHEL_IDLE_TIMEOUT"] = 60  # a new policy, the same keys
    client.get("/whoami")
    assert len(records(caplog, "satchel.security")) == 2


def test_short_key_ring_logged_at_init_app_is_not_logged_again_by_the_first_request(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="short")
    Satchel(app, store=SealedCookies())
    app.test_client().get("/")
    assert len(records(caplog, "satchel.security")) == 1


def test_a_key_of_exactly_32_bytes_is_not_short(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    app = Flask(__name__)
    app.config.update(SECRET_KEY=b"k" * 32, SECRET_KEY_FALLBACKS=["é" * 16])  # 32 UTF-8 bytes
    Satchel(app, store=MemoryStore())
    assert records(caplog, "satchel.security") == []
