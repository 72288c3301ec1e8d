"""satchel's lifecycle signals (``satchel.signals``) and their log lines, through real Flask apps.

Each test subscribes to the signals of one app and checks what a receiver
gets, and that neither a receiver nor a log line ever sees a session id, a
storage key or a cookie value: sessions are named by ``ids.fingerprint``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session
from flask.testing import FlaskClient

from satchel import signals
from satchel.errors import StoreUnavailable
from satchel.ids import fingerprint, new_id, storage_key
from tests.clock import FakeClock
from tests.modes import mode_app
from tests.test_on_store_error import down_store

NAMES = ("session_created", "session_rotated", "session_destroyed", "session_expired",
         "session_rejected", "session_revoked", "store_error")
HOUR = 3600.0


class Heard(list[tuple[str, dict[str, Any]]]):
    """What satchel's signals sent for one app, in order: (signal name, keyword arguments)."""

    def names(self) -> list[str]:
        return [name for name, _ in self]


def add_routes(app: Flask) -> Flask:
    @app.get("/set/<key>/<value>")
    def set_value(key: str, value: str) -> str:
        session[key] = value
        return "ok"

    @app.get("/get/<key>")
    def get_value(key: str) -> str:
        return str(session.get(key, "-"))

    @app.get("/pop/<key>")
    def pop(key: str) -> str:
        session.pop(key, None)
        return "ok"

    @app.get("/regenerate")
    def regenerate() -> str:
        session.regenerate()  # type: ignore[attr-defined]
        return "ok"

    @app.get("/destroy")
    def destroy() -> str:
        session.destroy()  # type: ignore[attr-defined]
        return "ok"

    @app.get("/empty-and-regenerate")
    def empty_and_regenerate() -> str:
        session.clear()
        session.regenerate()  # type: ignore[attr-defined]
        return "ok"

    @app.get("/nothing")
    def nothing() -> str:
        return "nothing"

    return app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cleanup() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


@pytest.fixture
def caplog_info(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="satchel")
    caplog.set_level(logging.INFO, logger="satchel.security")
    return caplog


def listen(app: Flask, cleanup: ExitStack) -> Heard:
    heard = Heard()
    for name in NAMES:
        def receive(sender: Any, _name: str = name, **kwargs: Any) -> None:
            assert sender is app
            heard.append((_name, kwargs))

        cleanup.enter_context(getattr(signals, name).connected_to(receive, sender=app))
    return heard


def build(mode: str, clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
          **config: Any) -> tuple[Flask, Heard]:
    app = add_routes(mode_app(mode, clock, tmp_path, cleanup, **config))
    return app, listen(app, cleanup)


def sid_of(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value.split(".")[0]


def cookie_value(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def assert_never_named(heard: Heard, caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    """No id, storage key or cookie among the receivers' arguments or the log lines."""
    seen = repr(list(heard)) + caplog.text + repr([r.args for r in caplog.records])
    for secret in secrets:
        for value in (secret, storage_key(secret.split(".")[0])):
            assert value not in seen


@pytest.fixture(params=["memory", "sqlite"])
def server(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_new_session_sends_created_and_a_plain_read_sends_nothing(
        server: str, clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build(server, clock, tmp_path, cleanup)
    client = app.test_client()
    client.get("/set/a/1")
    sid = sid_of(client)
    assert heard == [("session_created", {"fingerprint": fingerprint(sid)})]
    [line] = [r for r in caplog_info.records if r.name == "satchel.security"]
    assert line.levelno == logging.INFO and fingerprint(sid) in line.getMessage()
    heard.clear()
    caplog_info.clear()
    assert client.get("/get/a").text == "1"
    client.get("/set/a/2")
    client.get("/nothing")
    clock.advance(HOUR)  # past the touch threshold: the read slides the idle deadline
    assert client.get("/get/a").text == "2"
    assert heard == [] and caplog_info.records == []
    assert_never_named(heard, caplog_info, sid)


def test_regenerate_sends_rotated_with_both_fingerprints(
        server: str, clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build(server, clock, tmp_path, cleanup)
    client = app.test_client()
    client.get("/set/a/1")
    old = sid_of(client)
    heard.clear()
    client.get("/regenerate")
    new = sid_of(client)
    assert new != old
    assert heard == [("session_rotated", {"fingerprint": fingerprint(new),
                                          "old_fingerprint": fingerprint(old),
                                          "reason": "regenerate"})]
    assert_never_named(heard, caplog_info, old, new)


@pytest.mark.parametrize(("route", "reason"), [
    ("/destroy", "destroy"), ("/pop/a", "emptied"), ("/empty-and-regenerate", "emptied")])
def test_ending_a_session_sends_destroyed_with_the_reason(
        server: str, route: str, reason: str, clock: FakeClock, tmp_path: Path,
        cleanup: ExitStack, caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build(server, clock, tmp_path, cleanup)
    client = app.test_client()
    client.get("/set/a/1")
    sid = sid_of(client)
    heard.clear()
    client.get(route)
    assert client.get_cookie("session") is None
    assert heard == [("session_destroyed", {"fingerprint": fingerprint(sid), "reason": reason})]
    assert_never_named(heard, caplog_info, sid)


def test_a_logout_then_a_new_session_sends_destroyed_then_created(
        clock: FakeClock, tmp_path: Path, cleanup: ExitStack) -> None:
    app, heard = build("memory", clock, tmp_path, cleanup)

    @app.get("/logout-and-flash")
    def logout_and_flash() -> str:
        session.destroy()  # type: ignore[attr-defined]
        session["flash"] = "bye"
        return "ok"

    client = app.test_client()
    client.get("/set/a/1")
    old = sid_of(client)
    heard.clear()
    client.get("/logout-and-flash")
    assert heard == [("session_destroyed", {"fingerprint": fingerprint(old), "reason": "destroy"}),
                     ("session_created", {"fingerprint": fingerprint(sid_of(client))})]


@pytest.mark.parametrize("mode", ["memory", "sqlite", "cookie"])
@pytest.mark.parametrize(("setting", "reason"), [
    ("SATCHEL_IDLE_TIMEOUT", "idle"), ("SATCHEL_ABSOLUTE_TIMEOUT", "absolute")])
def test_a_session_past_a_lowered_timeout_sends_expired_with_which(
        mode: str, setting: str, reason: str, clock: FakeClock, tmp_path: Path,
        cleanup: ExitStack, caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build(mode, clock, tmp_path, cleanup, SATCHEL_IDLE_TIMEOUT=HOUR)
    client = app.test_client()
    client.get("/set/a/1")
    cookie = cookie_value(client)
    heard.clear()
    app.config[setting] = 60  # the store (or the sealed deadline) would keep it for an hour
    clock.advance(120)
    assert client.get("/get/a").text == "-"
    named = fingerprint(cookie if mode == "cookie" else cookie.split(".")[0])
    assert heard == [("session_expired", {"fingerprint": named, "reason": reason})]
    assert_never_named(heard, caplog_info, cookie)


@pytest.mark.parametrize(("config", "wait", "reason"), [
    ({"SATCHEL_IDLE_TIMEOUT": 60}, 61, "idle"),
    ({"SATCHEL_ABSOLUTE_TIMEOUT": 100}, 101, "absolute")])
def test_a_sealed_session_past_its_deadline_sends_expired_with_which(
        config: dict[str, Any], wait: float, reason: str, clock: FakeClock, tmp_path: Path,
        cleanup: ExitStack) -> None:
    app, heard = build("cookie", clock, tmp_path, cleanup, **config)
    client = app.test_client()
    client.get("/set/a/1")
    cookie = cookie_value(client)
    clock.advance(wait)
    assert client.get("/get/a").text == "-"
    assert heard[1:] == [("session_expired", {"fingerprint": fingerprint(cookie),
                                              "reason": reason})]


def test_a_bad_signature_is_rejected_as_a_warning(
        server: str, clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build(server, clock, tmp_path, cleanup)
    client = app.test_client()
    client.get("/set/a/1")
    good = cookie_value(client)
    forged = good[:-2] + ("AA" if good[-2:] != "AA" else "BB")
    heard.clear()
    caplog_info.clear()
    client.set_cookie("session", forged)
    assert client.get("/get/a").text == "-"
    assert heard == [("session_rejected", {"fingerprint": fingerprint(forged),
                                           "reason": "bad-signature"})]
    [line] = [r for r in caplog_info.records if r.name == "satchel.security"]
    assert line.levelno == logging.WARNING
    assert_never_named(heard, caplog_info, good, forged)


@pytest.mark.parametrize(("mode", "read_flask", "cookie", "reason"), [
    ("cookie", False, "AQEAAAAA" + "A" * 100, "bad-seal"),
    ("memory", True, "eyJ1c2VyIjoibWFsbG9yeSJ9.ZZZZZZ.forged", "bad-flask-cookie"),
    ("cookie", True, "eyJ1c2VyIjoibWFsbG9yeSJ9.ZZZZZZ.forged", "bad-flask-cookie")])
def test_bad_seals_and_bad_flask_cookies_are_rejected(
        mode: str, read_flask: bool, cookie: str, reason: str, clock: FakeClock,
        tmp_path: Path, cleanup: ExitStack, caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build(mode, clock, tmp_path, cleanup, SATCHEL_READ_FLASK_COOKIES=read_flask)
    client = app.test_client()
    client.set_cookie("session", cookie)
    assert client.get("/get/user").text == "-"
    assert heard == [("session_rejected", {"fingerprint": fingerprint(cookie),
                                           "reason": reason})]
    assert_never_named(heard, caplog_info, cookie)


def test_an_id_the_store_does_not_hold_is_rejected_unknown_but_a_rotated_one_is_not(
        server: str, clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build(server, clock, tmp_path, cleanup, SATCHEL_IDLE_TIMEOUT=HOUR)
    interface: Any = app.session_interface
    never = new_id()
    client = app.test_client()
    client.set_cookie("session", interface.engine.sign(never, False, interface.policy(app)))
    client.get("/get/a")
    assert heard == [("session_rejected", {"fingerprint": fingerprint(never),
                                           "reason": "unknown"})]
    heard.clear()
    client.get("/set/a/1")
    old_cookie = cookie_value(client)
    client.get("/regenerate")
    new = sid_of(client)
    heard.clear()
    late = app.test_client()  # a request in flight with the rotated id, within the grace
    late.set_cookie("session", old_cookie)
    assert late.get("/get/a").text == "1"
    assert heard == []
    clock.advance(2 * HOUR)  # the store dropped it for age: it cannot tell that from a logout
    assert client.get("/get/a").text == "-"
    assert heard == [("session_rejected", {"fingerprint": fingerprint(new), "reason": "unknown"})]
    assert_never_named(heard, caplog_info, never, old_cookie, new)


def test_revoked_is_sent_by_the_engines_events(
        clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build("memory", clock, tmp_path, cleanup)
    events = app.session_interface.engine.events  # type: ignore[attr-defined]
    events.revoked("h-1234", "revoke-user", "alice")
    sid = new_id()
    events.revoked("h-5678", "max-sessions", "bob", sid=sid)
    assert heard == [
        ("session_revoked", {"fingerprint": None, "handle": "h-1234", "reason": "revoke-user",
                             "user": "alice"}),
        ("session_revoked", {"fingerprint": fingerprint(sid), "handle": "h-5678",
                             "reason": "max-sessions", "user": "bob"})]
    lines = [r.getMessage() for r in caplog_info.records if r.name == "satchel.security"]
    assert len(lines) == 2 and "h-1234" in lines[0] and fingerprint(sid) in lines[1]
    assert_never_named(heard, caplog_info, sid)


@pytest.mark.parametrize("on_error", ["fail", "anonymous"])
def test_a_store_error_is_sent_once_with_the_operation(
        on_error: str, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    from tests.test_on_store_error import build_app, signed_cookie

    store = cleanup.enter_context(down_store("sqlite", tmp_path))
    app = build_app(store, SATCHEL_ON_STORE_ERROR=on_error)
    heard = listen(app, cleanup)
    client = app.test_client()
    assert client.post("/set/x").status_code == (503 if on_error == "fail" else 200)
    cookie = signed_cookie(app)
    client.set_cookie("session", cookie)
    assert client.get("/get").status_code == (503 if on_error == "fail" else 200)
    assert [(name, kwargs["operation"], kwargs["fingerprint"]) for name, kwargs in heard] == [
        ("store_error", "save", None),
        ("store_error", "load", fingerprint(cookie.split(".")[0]))]
    assert all(isinstance(kwargs["error"], StoreUnavailable) for _, kwargs in heard)
    errors = [r for r in caplog_info.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2 and all(r.name == "satchel" for r in errors)  # one line each
    assert_never_named(heard, caplog_info, cookie)


def test_a_store_error_from_the_app_is_sent_by_the_503_handler(
        clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build("memory", clock, tmp_path, cleanup)

    @app.get("/boom")
    def boom() -> str:
        raise StoreUnavailable("the session store at 127.0.0.1 is down")

    assert app.test_client().get("/boom").status_code == 503
    assert [(name, kwargs["operation"]) for name, kwargs in heard] == [("store_error", "request")]
    assert len([r for r in caplog_info.records if r.levelno >= logging.ERROR]) == 1


def test_a_receiver_that_raises_fails_the_request_as_flasks_own_signals_do(
        clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog: pytest.LogCaptureFixture) -> None:
    app, _ = build("memory", clock, tmp_path, cleanup)
    app.testing = False

    def broken(sender: Flask, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    cleanup.enter_context(signals.session_created.connected_to(broken, sender=app))
    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/set/a/1")
    assert response.status_code == 500
    assert any(r.exc_info and "receiver bug" in str(r.exc_info[1]) for r in caplog.records)


@pytest.mark.parametrize(("created", "last_seen", "now", "which"), [
    (0, 0, 59, None), (0, 50, 99, None), (0, 30, 90, "idle"), (0, 90, 100, "absolute"),
    (0, 10, 200, "idle"), (0, 60, 200, "absolute"), (0, 40, 200, "absolute")])
def test_expired_by_names_the_timeout_whose_deadline_came_first(
        created: float, last_seen: float, now: float, which: str | None) -> None:
    from satchel.lifetime import Lifetime

    lifetime = Lifetime(idle=60, absolute=100)
    assert lifetime.expired_by(created, last_seen, now) == which
    assert lifetime.is_expired(created, last_seen, now) == (which is not None)
