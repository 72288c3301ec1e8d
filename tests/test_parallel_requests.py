"""Requests that overlap on one session, in a set order, on every server-side store.

Each request runs a small script in its own thread (``get:k``, ``set:k=v``,
``pop:k``, ``clear``, ``destroy``, ``login:user``, ``wait:NAME``), so a test
decides which request loads and which commits first. ``Browser`` applies the
responses' ``Set-Cookie`` headers in the order they arrived, as a browser
does, and the next request is made with what it then holds.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, flash, get_flashed_messages, session
from flask import request as http_request

from tests.clock import FakeClock
from tests.modes import SERVER_MODES, mode_app

TIMEOUT = 10
HOUR = 3600.0


class Gates:
    """``wait:NAME`` in a script: say it got there, then wait to be released."""

    def __init__(self) -> None:
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def event(self, name: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(name, threading.Event())

    def arrive_and_wait(self, name: str) -> None:
        self.event("at:" + name).set()
        assert self.event("go:" + name).wait(TIMEOUT), f"{name} never released"

    def reached(self, name: str) -> None:
        assert self.event("at:" + name).wait(TIMEOUT), f"{name} never got there"

    def release(self, name: str) -> None:
        self.event("go:" + name).set()


def run_script(script: str) -> str:
    gates = _app_gates()
    for step in script.split(","):
        verb, _, argument = step.partition(":")
        if verb == "wait":
            gates.arrive_and_wait(argument)
        elif verb == "get":
            session.get(argument)
        elif verb == "set":
            key, _, value = argument.partition("=")
            session[key] = value
        elif verb == "pop":
            session.pop(argument, None)
        elif verb == "permanent":
            session.permanent = True
        elif verb == "clear":
            session.clear()
        elif verb == "destroy":
            session.destroy()  # type: ignore[attr-defined]
        elif verb == "regenerate":  # a privilege change, or a periodic rotation
            session.regenerate()  # type: ignore[attr-defined]
        elif verb == "drop":  # a logout as a privilege change (OWASP): drop the key, rotate
            session.pop(argument, None)
            session.regenerate()  # type: ignore[attr-defined]
        elif verb == "flash":
            flash("bye")
        elif verb == "login":
            session.clear()
            session["user"] = argument
            session.permanent = True
            session.regenerate()  # type: ignore[attr-defined]
        else:
            raise ValueError(step)
    return "ok"


def _app_gates() -> Gates:
    from flask import current_app

    gates: Gates = current_app.extensions["gates"]
    return gates


class Browser:
    """The session cookie a browser holds, given responses in the order they arrived."""

    def __init__(self, cookie: str | None) -> None:
        self.cookie = cookie

    def receive(self, response: Any) -> None:
        for header in response.headers.getlist("Set-Cookie"):
            name, _, rest = header.partition("=")
            if name != "session":
                continue
            value = rest.split(";", 1)[0]
            expired = "expires=thu, 01 jan 1970" in header.lower() or "max-age=0" in header.lower()
            self.cookie = None if expired or not value else value


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def scripted_app(mode: str, clock: FakeClock, folder: Path, cleanup: ExitStack,
                 **config: Any) -> Flask:
    """An app in ``mode`` whose ``/run?script=...`` runs :func:`run_script`, with ``/dump``
    (the session's data) and ``/flashes``."""
    app = mode_app(mode, clock, folder, cleanup, **config)
    app.extensions["gates"] = Gates()

    @app.get("/run")
    def run() -> str:
        return run_script(http_request.args["script"])

    @app.get("/dump")
    def dump() -> dict[str, Any]:
        return dict(session)

    @app.get("/flashes")
    def flashes() -> Any:
        return get_flashed_messages()

    return app


@pytest.fixture(params=SERVER_MODES)
def app(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Flask]:
    with ExitStack() as cleanup:
        yield scripted_app(request.param, clock, tmp_path, cleanup)


class Requests:
    """Scripts run on threads against ``app``, each with the cookie a browser holds."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.gates: Gates = app.extensions["gates"]
        self.pool = ThreadPoolExecutor(4)

    def start(self, script: str, cookie: str | None) -> Future[Any]:
        client = self.app.test_client(use_cookies=False)
        headers = {"Cookie": f"session={cookie}"} if cookie else {}
        return self.pool.submit(client.get, "/run", query_string={"script": script},
                                headers=headers)

    def run(self, script: str, cookie: str | None) -> Any:
        response = self.start(script, cookie).result(TIMEOUT)
        assert response.status_code == 200, response.text
        return response

    def dump(self, cookie: str | None) -> Any:
        client = self.app.test_client(use_cookies=False)
        headers = {"Cookie": f"session={cookie}"} if cookie else {}
        return client.get("/dump", headers=headers).json


@contextmanager
def running(app: Flask) -> Iterator[Requests]:
    """A :class:`Requests` for ``app``; at the end no thread is left waiting at a gate."""
    runner = Requests(app)
    try:
        yield runner
    finally:
        for name in list(runner.gates._events):
            if name.startswith("go:"):
                runner.gates.release(name[3:])
        runner.pool.shutdown(wait=True)


@pytest.fixture
def requests(app: Flask) -> Iterator[Requests]:
    with running(app) as runner:
        yield runner


def seeded(requests: Requests, script: str = "set:seed=1") -> Browser:
    browser = Browser(None)
    browser.receive(requests.run(script, None))
    assert browser.cookie is not None
    return browser


def done(future: Future[Any]) -> Any:
    response = future.result(TIMEOUT)
    assert response.status_code == 200, response.text
    return response


# -- different keys never lose each other's writes ------------------------------------------


@pytest.mark.parametrize("empties", ["pop:seed", "clear"])
def test_emptying_request_commits_last_and_keeps_the_others_key(
    requests: Requests, empties: str
) -> None:
    browser = seeded(requests)
    a = requests.start(f"get:seed,{empties},wait:A", browser.cookie)
    requests.gates.reached("A")  # A loaded {"seed": 1} and emptied its copy
    browser.receive(requests.run("set:b=2", browser.cookie))
    requests.gates.release("A")
    browser.receive(done(a))
    assert requests.dump(browser.cookie) == {"b": "2"}


@pytest.mark.parametrize("empties", ["pop:seed", "clear"])
def test_emptying_request_commits_first_and_the_others_key_survives(
    requests: Requests, empties: str
) -> None:
    browser = seeded(requests)
    b = requests.start("get:seed,wait:B,set:b=2", browser.cookie)
    requests.gates.reached("B")  # B loaded {"seed": 1}
    browser.receive(requests.run(f"get:seed,{empties}", browser.cookie))
    requests.gates.release("B")
    browser.receive(done(b))
    assert requests.dump(browser.cookie) == {"b": "2"}


@pytest.mark.parametrize("order", ["logout-first", "logout-last"])
def test_destroy_wins_over_a_parallel_write(requests: Requests, order: str) -> None:
    browser = seeded(requests, "set:user=alice")
    old = browser.cookie
    if order == "logout-last":
        a = requests.start("get:user,destroy,wait:A", old)
        requests.gates.reached("A")
        browser.receive(requests.run("set:b=2", old))
        requests.gates.release("A")
        browser.receive(done(a))
    else:
        b = requests.start("get:user,wait:B,set:b=2", old)
        requests.gates.reached("B")
        browser.receive(requests.run("get:user,destroy", old))
        requests.gates.release("B")
        browser.receive(done(b))
    assert browser.cookie is None
    assert requests.dump(old) == {}


# -- a login is never undone by a request that started before it ------------------------------


@pytest.mark.parametrize("late", ["wait:B", "get:cart,wait:B", "wait:B,get:cart",
                                  "wait:B,set:flash=hi", "get:cart,wait:B,set:cart=pear"])
@pytest.mark.parametrize("touch_due", [False, True])
def test_login_sticks_when_an_older_request_answers_after_it(
    requests: Requests, clock: FakeClock, late: str, touch_due: bool
) -> None:
    browser = seeded(requests, "set:cart=apple")
    browser.receive(requests.run("permanent", browser.cookie))  # refreshed on each request,
    old = browser.cookie  # by Flask's default SESSION_REFRESH_EACH_REQUEST
    assert old is not None and old[44] == "p"
    if touch_due:
        clock.advance(HOUR)  # the next request to write or touch will push the expiry
    b = requests.start(late, old)  # B started before the login, with the old cookie
    requests.gates.reached("B")
    login = requests.run("get:cart,login:alice", old)
    browser.receive(login)
    assert browser.cookie not in (None, old)
    requests.gates.release("B")
    late_response = done(b)
    assert "Set-Cookie" not in late_response.headers
    browser.receive(late_response)
    assert requests.dump(browser.cookie) == {"user": "alice"}


def test_a_planted_old_id_never_sees_the_login(requests: Requests, clock: FakeClock) -> None:
    victim = seeded(requests, "set:cart=apple")
    planted = victim.cookie  # an attacker set this id in the victim's browser
    victim.receive(requests.run("login:alice", planted))
    assert requests.dump(victim.cookie) == {"user": "alice"}
    # During the grace period the old id opens read-only, with only what the login left
    # unchanged: here nothing (the login cleared the session).
    attempt = requests.run("set:user=mallory", planted)
    assert "Set-Cookie" not in attempt.headers
    assert requests.dump(planted) == {}
    clock.advance(61)
    assert requests.dump(planted) == {}
    assert requests.dump(victim.cookie) == {"user": "alice"}


def test_a_logout_wins_over_an_emptying_and_a_write_that_both_began_before_it(
    requests: Requests,
) -> None:
    browser = seeded(requests, "set:seed=1")
    old = browser.cookie
    empties = requests.start("get:seed,pop:seed,wait:B", old)
    writes = requests.start("get:seed,wait:C,set:b=2", old)
    requests.gates.reached("B")
    requests.gates.reached("C")
    browser.receive(requests.run("get:seed,destroy", old))  # the logout answers first
    requests.gates.release("B")
    browser.receive(done(empties))
    requests.gates.release("C")
    late_write = done(writes)
    assert "Set-Cookie" not in late_write.headers  # no new session after the logout
    browser.receive(late_write)
    assert browser.cookie is None
    assert requests.dump(old) == {}
