"""Logouts and id rotations that race, or follow each other within the grace period.

Found by trying to break issue 10's tombstones, on every server-side store;
the requests run on threads in a set order (see tests/test_parallel_requests.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from flask import Flask

from tests.clock import FakeClock
from tests.modes import SERVER_MODES
from tests.test_parallel_requests import Requests, done, running, scripted_app, seeded


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=SERVER_MODES)
def app(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Flask]:
    with ExitStack() as cleanup:
        yield scripted_app(request.param, clock, tmp_path, cleanup, SATCHEL_ABSOLUTE_TIMEOUT=3600)


@pytest.fixture
def requests(app: Flask) -> Iterator[Requests]:
    with running(app) as runner:
        yield runner


# -- destroy() always wins ----------------------------------------------------------------


def test_a_logout_answered_after_a_parallel_rotation_logs_out(requests: Requests) -> None:
    # Another tab rotated the id (a privilege change); the logout request, sent with the old
    # cookie, opened the session read-only from the rotation's tombstone, and its destroy()
    # was dropped: no cookie change, so the browser kept the rotated, logged-in session.
    browser = seeded(requests, "set:user=alice")
    old = browser.cookie
    logout = requests.start("wait:D,get:user,destroy", old)
    requests.gates.reached("D")
    browser.receive(requests.run("get:user,regenerate", old))
    rotated = browser.cookie
    requests.gates.release("D")
    browser.receive(done(logout))
    assert browser.cookie is None or requests.dump(browser.cookie) == {}
    assert requests.dump(rotated) == {}  # the rotated session ended too: a copy of its cookie
    assert requests.dump(old) == {}  # opens nothing, nor does the old one


def test_a_rotation_that_commits_after_a_parallel_logout_does_not_bring_it_back(
    requests: Requests,
) -> None:
    # The rotation loaded before the logout and committed after it: it stored the logged-in
    # data under a new id and sent its cookie, undoing the logout.
    browser = seeded(requests, "set:user=alice")
    old = browser.cookie
    rotation = requests.start("get:user,wait:R,regenerate", old)
    requests.gates.reached("R")  # loaded {"user": "alice"}
    browser.receive(requests.run("get:user,destroy", old))
    assert browser.cookie is None
    requests.gates.release("R")
    rotated = done(rotation)
    browser.receive(rotated)
    assert browser.cookie is None or requests.dump(browser.cookie) == {}


# -- the old id of a session that lost a privilege ---------------------------------------------


@pytest.mark.parametrize("logout", ["drop:user", "clear,regenerate"])
def test_the_old_id_is_logged_out_once_a_rotation_drops_the_user(
    requests: Requests, logout: str
) -> None:
    browser = seeded(requests, "set:user=alice,set:cart=apple")
    old = browser.cookie
    browser.receive(requests.run(logout, old))
    assert "user" not in requests.dump(browser.cookie)
    assert "user" not in requests.dump(old)  # e.g. a stolen copy of the old cookie


def test_a_logout_ends_the_ids_the_session_rotated_from(requests: Requests) -> None:
    browser = seeded(requests, "set:user=alice")
    first = browser.cookie
    browser.receive(requests.run("regenerate", first))  # e.g. a periodic rotation
    browser.receive(requests.run("destroy", browser.cookie))
    assert browser.cookie is None
    assert requests.dump(first) == {}


# -- what starts after a logout is a new session -----------------------------------------------


def test_a_flash_after_logout_outlives_the_ended_sessions_absolute_deadline(
    requests: Requests, clock: FakeClock
) -> None:
    # destroy() then flash(): "a brand-new session with a fresh id" kept the ended session's
    # creation time, so with SATCHEL_ABSOLUTE_TIMEOUT it died at the old deadline (at once,
    # if that was near): the flash was lost.
    browser = seeded(requests, "set:user=alice")
    clock.advance(3590)
    browser.receive(requests.run("destroy,flash", browser.cookie))
    assert browser.cookie is not None
    clock.advance(20)
    client = requests.app.test_client(use_cookies=False)
    shown = client.get("/flashes", headers={"Cookie": f"session={browser.cookie}"})
    assert shown.json == ["bye"]
