"""``session_expired`` for a session the store itself expired, through real Flask apps.

Memory, SQLite and PostgreSQL keep an expired record until it is purged
(``satchel.store.ExpiredLookup``): a request that comes back with its cookie is
told ``session_expired`` with the timeout that ended it, not ``session_rejected``
``"unknown"``, and the record is deleted. A session that was revoked or logged out
is still unknown. Redis drops a key at its TTL and cannot tell (README, Signals).
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session

from satchel import MemoryStore, Satchel
from satchel.ids import fingerprint, storage_key
from satchel.lifetime import Lifetime
from satchel.store import SessionInfo
from tests.clock import FakeClock
from tests.event_apps import (
    HOUR,
    add_routes,
    assert_never_named,
    build,
    cookie_value,
    listen,
    sid_of,
)
from tests.spy import SpyStore

STORES = ("memory", "sqlite", "postgres")


@pytest.fixture(params=STORES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def holds_expired(app: Flask, sid: str) -> SessionInfo | None:
    store: Any = Satchel.store_of(app)
    found: SessionInfo | None = store.expired(storage_key(sid))
    return found


@pytest.mark.parametrize(("config", "waits", "reason"), [
    ({"SATCHEL_IDLE_TIMEOUT": 60}, [5, 56], "idle"),  # seen at 5 (too soon to touch)
    ({"SATCHEL_IDLE_TIMEOUT": HOUR, "SATCHEL_ABSOLUTE_TIMEOUT": 100}, [50, 51], "absolute")])
def test_a_session_the_store_expired_sends_expired_with_which_and_is_deleted(
        mode: str, config: dict[str, Any], waits: list[float], reason: str, clock: FakeClock,
        tmp_path: Path, cleanup: ExitStack, caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build(mode, clock, tmp_path, cleanup, **config)
    client = app.test_client()
    client.get("/set/a/1")
    cookie, sid = cookie_value(client), sid_of(client)
    clock.advance(waits[0])
    assert client.get("/get/a").text == "1"
    clock.advance(waits[1])  # 61 s after the last touch, 101 s after the start
    heard.clear()
    caplog_info.clear()
    assert holds_expired(app, sid) is not None  # the store holds it, expired
    assert client.get("/get/a").text == "-"
    assert heard == [("session_expired", {"fingerprint": fingerprint(sid), "reason": reason})]
    [line] = [r for r in caplog_info.records if r.name == "satchel.security"]
    assert line.levelno == logging.INFO and f"past its {reason} timeout" in line.getMessage()
    assert holds_expired(app, sid) is None  # deleted
    heard.clear()
    again = app.test_client()  # the same cookie once more: told once, then unknown
    again.set_cookie("session", cookie)
    assert again.get("/get/a").text == "-"
    assert heard == [("session_rejected", {"fingerprint": fingerprint(sid),
                                           "reason": "unknown"})]
    assert_never_named(heard, caplog_info, cookie)


def test_a_revoked_session_is_unknown_beside_an_expired_one(
        mode: str, clock: FakeClock, tmp_path: Path, cleanup: ExitStack,
        caplog_info: pytest.LogCaptureFixture) -> None:
    app, heard = build(mode, clock, tmp_path, cleanup, SATCHEL_IDLE_TIMEOUT=60)

    @app.get("/handle")
    def handle_view() -> str:
        return str(session.handle)  # type: ignore[attr-defined]

    idle, revoked, logged_out = (app.test_client() for _ in range(3))
    for client in (idle, revoked, logged_out):
        client.get("/set/a/1")
    sids = [sid_of(client) for client in (idle, revoked, logged_out)]
    out_cookie = cookie_value(logged_out)
    satchel: Satchel = app.extensions["satchel"]
    assert satchel.revoke(revoked.get("/handle").text, app=app)
    logged_out.get("/destroy")
    logged_out.set_cookie("session", out_cookie)  # a copy of the cookie kept elsewhere
    clock.advance(61)  # past the idle timeout: all three would be expired now
    heard.clear()
    for client in (idle, revoked, logged_out):
        assert client.get("/get/a").text == "-"
    assert heard == [
        ("session_expired", {"fingerprint": fingerprint(sids[0]), "reason": "idle"}),
        ("session_rejected", {"fingerprint": fingerprint(sids[1]), "reason": "unknown"}),
        ("session_rejected", {"fingerprint": fingerprint(sids[2]), "reason": "unknown"})]
    assert_never_named(heard, caplog_info, *sids)


RAISED = [({"SATCHEL_IDLE_TIMEOUT": 60}, {"SATCHEL_IDLE_TIMEOUT": 120}, 61, "idle"),
          ({"SATCHEL_IDLE_TIMEOUT": HOUR, "SATCHEL_ABSOLUTE_TIMEOUT": 100},
           {"SATCHEL_ABSOLUTE_TIMEOUT": 1000}, 101, "absolute")]


@pytest.mark.parametrize("mode", [*STORES, "cookie"])
@pytest.mark.parametrize(("before", "after", "wait", "reason"), RAISED)
def test_a_session_past_its_stored_deadline_under_raised_timeouts_still_ends_with_which(
        mode: str, before: dict[str, Any], after: dict[str, Any], wait: float, reason: str,
        clock: FakeClock, tmp_path: Path, cleanup: ExitStack) -> None:
    # The timeouts in force now would keep it; the deadline stored (or sealed in cookie
    # mode) under the old ones tells which ended it (satchel.lifetime.Lifetime.set_by).
    app, heard = build(mode, clock, tmp_path, cleanup, **before)
    client = app.test_client()
    client.get("/set/a/1")
    cookie = cookie_value(client)
    app.config.update(after)
    clock.advance(wait)
    heard.clear()
    assert client.get("/get/a").text == "-"
    named = cookie if mode == "cookie" else cookie.split(".")[0]
    assert heard == [("session_expired", {"fingerprint": fingerprint(named), "reason": reason})]
    if mode != "cookie":
        assert holds_expired(app, named) is None


@pytest.mark.parametrize(("created", "last_seen", "expires_at", "which"), [
    (0, 10_000, 11_800, "idle"),  # idle was 30 min (1 h now)
    (0, 0, 1_800, "idle"),  # the same, a session never seen again
    (0, 28_500, 28_800, "absolute"),  # absolute was 8 h (12 h now), cut 5 min after a visit
    (0, 28_800, 28_800, "absolute"),  # a deadline at the last visit is no idle deadline
    (0, 19_800, 21_600, "absolute")])  # a tie: idle was half, or absolute was half
def test_set_by_names_the_timeout_that_changed_least(
        created: float, last_seen: float, expires_at: float, which: str) -> None:
    hour = 3600
    assert Lifetime(idle=hour, absolute=12 * hour).set_by(created, last_seen,
                                                          expires_at) == which
    assert Lifetime(idle=hour).set_by(created, last_seen, expires_at) == "idle"


class ExpiredSpy(SpyStore):
    """A SpyStore that has the store's ``expired`` too, and records it."""

    def expired(self, key: str) -> SessionInfo | None:
        self.calls.append(("expired", key))
        found: SessionInfo | None = self.inner.expired(key)  # type: ignore[attr-defined]
        return found


def test_the_lookup_is_made_only_for_a_signed_id_the_store_misses(
        clock: FakeClock, cleanup: ExitStack) -> None:
    spy = ExpiredSpy(MemoryStore(clock=clock))
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="k" * 32, SATCHEL_IDLE_TIMEOUT=60)
    Satchel(app, store=spy, clock=clock)
    heard = listen(add_routes(app), cleanup)
    client = app.test_client()
    client.get("/set/a/1")
    cookie, sid = cookie_value(client), sid_of(client)
    for _ in range(3):
        clock.advance(50)  # a touch each time: it stays live
        assert client.get("/get/a").text == "1"
    client.set_cookie("session", "not-a-signed-id")
    client.get("/get/a")
    assert "load" in spy.names() and "expired" not in spy.names()
    client.set_cookie("session", cookie)
    clock.advance(61)
    spy.reset()
    assert client.get("/get/a").text == "-"
    assert spy.names()[:1] == ["load"] and spy.names().count("expired") == 1
    assert heard[-1] == ("session_expired", {"fingerprint": fingerprint(sid), "reason": "idle"})
