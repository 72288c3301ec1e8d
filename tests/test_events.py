"""satchel's lifecycle signals (``satchel.signals``) and their log lines, through real Flask apps.

Each test subscribes to the signals of one app and checks what a receiver
gets, and that neither a receiver nor a log line ever sees a session id, a
storage key or a cookie value: sessions are named by ``ids.fingerprint``.
The store's failures and failing receivers: tests/test_event_failures.py.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from flask import session

from satchel import Satchel
from satchel.ids import fingerprint, new_id
from satchel.lifetime import Lifetime
from satchel.store import UserIndex
from tests.clock import FakeClock
from tests.event_apps import (
    HOUR,
    assert_never_named,
    build,
    cookie_value,
    sid_of,
)


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


def test_a_logout_through_a_rotated_id_sends_destroyed(
        server: str, clock: FakeClock, tmp_path: Path, cleanup: ExitStack) -> None:
    app, heard = build(server, clock, tmp_path, cleanup)
    client = app.test_client()
    client.get("/set/a/1")
    old_cookie = cookie_value(client)
    client.get("/regenerate")
    heard.clear()
    late = app.test_client()  # within the grace period: opens read-only, and may log out
    late.set_cookie("session", old_cookie)
    late.get("/destroy")
    assert heard == [("session_destroyed", {"fingerprint": fingerprint(old_cookie[:43]),
                                            "reason": "destroy"})]
    assert client.get("/get/a").text == "-"


@pytest.mark.parametrize(("route", "reason"), [("/destroy", "destroy"), ("/pop/a", "emptied")])
def test_sealed_sessions_send_created_and_destroyed(
        route: str, reason: str, clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build("cookie", clock, tmp_path, cleanup)
    client = app.test_client()
    client.get("/set/a/1")
    token = cookie_value(client)
    client.get("/get/a")
    client.get("/set/a/2")  # re-sealed: the same session, nothing sent
    resealed = cookie_value(client)
    client.get(route)
    assert heard == [("session_created", {"fingerprint": fingerprint(token)}),
                     ("session_destroyed", {"fingerprint": fingerprint(resealed),
                                            "reason": reason})]
    assert_never_named(heard, caplog_info, token, resealed)


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
    clock.advance(2 * HOUR)  # past the idle timeout: the store holds it expired, and tells
    assert client.get("/get/a").text == "-"  # (memory and SQLite: satchel.store.ExpiredLookup)
    assert heard == [("session_expired", {"fingerprint": fingerprint(new), "reason": "idle"})]
    assert_never_named(heard, caplog_info, never, old_cookie, new)


def test_a_change_of_user_sends_rotated_user_changed(
        server: str, clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build(server, clock, tmp_path, cleanup)
    client = app.test_client()
    client.get("/set/cart/pencil")
    ids = [sid_of(client)]
    for route in ("/set/_user_id/7", "/set/_user_id/8", "/pop/_user_id"):  # in, switch, out
        client.get(route)
        ids.append(sid_of(client))
    assert heard[1:] == [("session_rotated", {"fingerprint": fingerprint(new),
                                              "old_fingerprint": fingerprint(old),
                                              "reason": "user-changed"})
                         for old, new in pairwise(ids)]
    assert_never_named(heard, caplog_info, *ids)


def test_revoke_sends_revoked_with_the_handle(
        server: str, clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build(server, clock, tmp_path, cleanup)

    @app.get("/handle")
    def handle_view() -> str:
        return str(session.handle)  # the first use of the session: it loads it  # type: ignore[attr-defined]

    client = app.test_client()
    client.get("/set/a/1")
    handle = client.get("/handle").text
    heard.clear()
    satchel: Satchel = app.extensions["satchel"]
    assert satchel.revoke(handle, app=app)
    assert not satchel.revoke(handle, app=app)  # ended already: nothing more is sent
    assert heard == [("session_revoked", {"handle": handle, "reason": "revoke", "user": None})]
    [line] = [r.getMessage() for r in caplog_info.records if "revoked" in r.getMessage()]
    assert handle in line
    assert client.get("/get/a").text == "-"
    assert_never_named(heard, caplog_info, sid_of(client))


def test_revoke_user_and_the_cap_send_revoked_with_the_user(
        server: str, clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build(server, clock, tmp_path, cleanup, SATCHEL_MAX_SESSIONS_PER_USER=2)
    satchel: Satchel = app.extensions["satchel"]
    if not isinstance(satchel.store_of(app), UserIndex):
        pytest.skip(f"the {server} store has no user index yet (satchel.store.UserIndex)")
    devices = [app.test_client() for _ in range(3)]
    for device in devices:
        clock.advance(1)
        device.get("/set/_user_id/7")
    with app.app_context():
        handles = [listed.handle for listed in satchel.sessions_of(7)]
    assert devices[0].get("/get/_user_id").text == "-"  # the oldest, past the cap
    assert [kwargs["reason"] for name, kwargs in heard if name == "session_revoked"] == [
        "max-sessions"]
    heard.clear()
    assert satchel.revoke_user(7, app=app) == 2
    assert sorted(kwargs["handle"] for _, kwargs in heard) == sorted(handles)
    assert {(name, kwargs["reason"], kwargs["user"]) for name, kwargs in heard} == {
        ("session_revoked", "revoke-user", "7")}
    assert_never_named(heard, caplog_info)


@pytest.mark.parametrize(("created", "last_seen", "now", "which"), [
    (0, 0, 59, None), (0, 50, 99, None), (0, 30, 90, "idle"), (0, 90, 100, "absolute"),
    (0, 10, 200, "idle"), (0, 60, 200, "absolute"), (0, 40, 200, "absolute")])
def test_expired_by_names_the_timeout_whose_deadline_came_first(
        created: float, last_seen: float, now: float, which: str | None) -> None:
    lifetime = Lifetime(idle=60, absolute=100)
    assert lifetime.expired_by(created, last_seen, now) == which
    assert lifetime.is_expired(created, last_seen, now) == (which is not None)
