"""``@session_lock``: requests on one session run one at a time, on every server-side store.

Each test holds one request inside its locked view (a gate), starts a second
on the same session, waits until that one has tried the lock and found it
held, then lets the first finish: the second must load what the first
committed. Without the lock the second would have loaded before the first
committed, and one change would be lost.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, session

from satchel import ConfigError, Satchel, SealedCookies, session_lock
from satchel.ids import storage_key
from satchel.locking import lock_key
from satchel.signals import session_lock_timeout
from tests.clock import FakeClock
from tests.modes import SERVER_MODES, mode_app

TIMEOUT = 10


class Harness:
    """An app with a locked counter, and a way to see a request blocked on the lock."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.store: Any = Satchel.store_of(app)
        self.hold = threading.Event()  # set: /add waits at "held" until released
        self.held = threading.Event()
        self.release = threading.Event()
        self.refused = threading.Event()  # an acquire_lock found the lock taken
        self.acquires = 0
        take = self.store.acquire_lock

        def spy(key: str, token: str, lease: float) -> bool:
            self.acquires += 1
            taken: bool = take(key, token, lease)
            if not taken:
                self.refused.set()
            return taken

        self.store.acquire_lock = spy
        self.pool = ThreadPoolExecutor(4)

    def get(self, path: str, cookie: str | None) -> Any:
        client = self.app.test_client(use_cookies=False)
        headers = {"Cookie": f"session={cookie}"} if cookie else {}
        return client.get(path, headers=headers)

    def start(self) -> str:
        response = self.get("/start", None)
        assert response.status_code == 200
        cookie: str = response.headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]
        return cookie


def counter_app(app: Flask, how: str) -> None:
    """Routes: /start (count=0), /add (count += 1, under the lock), /count."""

    @app.get("/start")
    def start() -> str:
        session["count"] = 0
        return "ok"

    def add() -> str:
        harness: Harness = app.extensions["harness"]
        count = session["count"]
        if harness.hold.is_set():
            harness.hold.clear()
            harness.held.set()
            assert harness.release.wait(TIMEOUT)
        session["count"] = count + 1
        return str(count + 1)

    if how == "view":  # the view is the first to use the session
        app.get("/add")(session_lock(add))
    elif how == "before_request":  # a before_request handler loads it first
        app.get("/add")(session_lock(wait=TIMEOUT)(add))
    else:  # ... and the route's function is not the locked one (as with a MethodView)
        locked = session_lock(add)
        app.add_url_rule("/add", "add", lambda: locked())

    if how != "view":
        @app.before_request
        def peek() -> None:
            session.get("count")

    @app.get("/count")
    def count() -> dict[str, Any]:
        return {"count": session.get("count")}


@pytest.fixture(params=SERVER_MODES)
def mode(request: pytest.FixtureRequest) -> str:
    mode: str = request.param
    return mode


@pytest.fixture
def make(mode: str, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    with ExitStack() as cleanup:
        harnesses: list[Harness] = []

        def build(how: str = "view", **config: Any) -> Harness:
            app = mode_app(mode, FakeClock(), tmp_path, cleanup, **config)
            counter_app(app, how)
            harness = app.extensions["harness"] = Harness(app)
            harnesses.append(harness)
            return harness

        yield build
        for harness in harnesses:
            harness.release.set()
            harness.pool.shutdown(wait=True)


@pytest.mark.parametrize("how", ["view", "before_request", "unmarked"])
def test_a_second_request_loads_what_the_first_committed(
    make: Callable[..., Harness], how: str
) -> None:
    harness = make(how)
    cookie = harness.start()
    harness.hold.set()
    first = harness.pool.submit(harness.get, "/add", cookie)
    assert harness.held.wait(TIMEOUT)  # the first loaded count=0 and holds the lock
    second = harness.pool.submit(harness.get, "/add", cookie)  # prefetches, where it can
    assert harness.refused.wait(TIMEOUT)  # the second is waiting for the lock
    harness.release.set()
    assert first.result(TIMEOUT).text == "1"
    assert second.result(TIMEOUT).text == "2"
    assert harness.get("/count", cookie).json == {"count": 2}


def test_a_wait_past_its_limit_is_a_503_and_a_signal(
    make: Callable[..., Harness], mode: str
) -> None:
    harness = make()
    app = harness.app

    @app.get("/impatient")
    @session_lock(wait=0)
    def impatient() -> str:
        session["count"] = -1
        return "ran"

    cookie = harness.start()
    sid = cookie.split(".", 1)[0]
    key = lock_key(storage_key(sid))
    assert harness.store.acquire_lock(key, "another request", 30)
    sent: list[dict[str, Any]] = []

    def receive(sender: Flask, **extra: Any) -> None:
        sent.append({"sender": sender, **extra})

    with session_lock_timeout.connected_to(receive, sender=app):
        response = harness.get("/impatient", cookie)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "Set-Cookie" not in response.headers
    assert [(s["sender"], s["waited"], s["endpoint"]) for s in sent] == [(app, 0, "impatient")]
    assert sid not in repr(sent)
    assert harness.store.release_lock(key, "another request")
    assert harness.get("/count", cookie).json == {"count": 0}  # nothing was written
    assert harness.get("/impatient", cookie).text == "ran"


def test_the_lock_is_released_when_the_view_raises(make: Callable[..., Harness]) -> None:
    harness = make()
    app = harness.app

    @app.get("/boom")
    @session_lock(wait=0)
    def boom() -> str:
        session["count"] = 99
        raise RuntimeError("boom")

    cookie = harness.start()
    app.config["TESTING"] = False  # a 500, as in production
    assert harness.get("/boom", cookie).status_code == 500
    assert harness.get("/add", cookie).status_code == 200  # the lock is free
    assert harness.refused.is_set() is False


def test_the_lock_is_released_when_save_session_never_runs(
        make: Callable[..., Harness]) -> None:
    harness = make()
    app = harness.app
    broken: dict[str, bool] = {}

    @app.after_request
    def fail_once(response: Any) -> Any:  # Flask then never calls save_session
        if broken.get("after_request"):  # the 500 page's response too
            raise RuntimeError("after_request failed")
        return response

    @app.get("/quick")
    @session_lock(wait=0)
    def quick() -> str:
        return str(session.get("count"))

    cookie = harness.start()
    broken["after_request"] = True
    app.config.update(TESTING=False, PROPAGATE_EXCEPTIONS=False)  # a 500, as in production
    assert harness.get("/quick", cookie).status_code == 500
    assert harness.acquires == 1
    broken["after_request"] = False
    assert harness.get("/quick", cookie).status_code == 200  # the teardown released it
    assert harness.refused.is_set() is False


def test_a_request_without_a_session_takes_no_lock(make: Callable[..., Harness]) -> None:
    harness = make()
    app = harness.app

    @app.get("/fresh")
    @session_lock
    def fresh() -> str:
        session["count"] = session.get("count", 0) + 1
        return "ok"

    assert harness.get("/fresh", None).status_code == 200
    assert harness.acquires == 0
    cookie = harness.start()
    assert harness.get("/fresh", cookie).status_code == 200
    assert harness.acquires == 1


def test_changes_made_before_an_unmarked_lock_are_refused(
    make: Callable[..., Harness]
) -> None:
    harness = make()
    app = harness.app
    locked = session_lock(lambda: "ran")
    app.add_url_rule("/late", "late", lambda: locked())

    @app.before_request
    def write() -> None:
        from flask import request

        if request.path == "/late":
            session["count"] = 5

    cookie = harness.start()
    with pytest.raises(RuntimeError, match="put @session_lock right under the route"):
        harness.get("/late", cookie)


@pytest.mark.parametrize("bad", [{"wait": -1}, {"lease": 0}, {"wait": float("nan")},
                                 {"lease": "30"}, {"wait": True}])
def test_unusable_settings_are_refused_at_decoration(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="@session_lock"):
        session_lock(**bad)


def test_cookie_mode_refuses_a_locked_view(tmp_path: Path) -> None:
    app = Flask(__name__)
    app.config.update(TESTING=True, SECRET_KEY="k" * 32)

    @app.get("/before")
    @session_lock
    def before() -> str:
        return "ok"

    with pytest.raises(ConfigError, match=r"'before'.*no server can lock"):
        Satchel(app, store=SealedCookies())
    later = Flask(__name__)
    later.config.update(TESTING=True, SECRET_KEY="k" * 32)
    Satchel(later, store=SealedCookies())

    @later.get("/after")
    @session_lock(wait=1)
    def after() -> str:
        return "ok"

    with pytest.raises(ConfigError, match=r"'after'.*cookie://"):
        later.test_client().get("/after")


def test_a_before_request_change_on_a_locked_route_is_made_under_the_lock(
    make: Callable[..., Harness]
) -> None:
    harness = make()
    app = harness.app

    @app.get("/stamp")
    @session_lock
    def stamp() -> str:
        session["count"] += 1
        return "ok"

    @app.before_request
    def write() -> None:
        from flask import request

        if request.path == "/stamp":
            session["stamped"] = True

    cookie = harness.start()
    assert harness.get("/stamp", cookie).status_code == 200
    assert harness.acquires == 1
    assert harness.get("/count", cookie).json == {"count": 1}


def test_a_locked_path_is_not_prefetched_again(make: Callable[..., Harness], mode: str) -> None:
    harness = make()
    use = harness.app.session_interface.session_use  # type: ignore[attr-defined]
    if use is None:
        pytest.skip(f"the {mode} store loads without prefetching")
    cookie = harness.start()
    assert harness.get("/count", cookie).status_code == 200
    assert use.expected("/count")
    assert harness.get("/add", cookie).text == "1"
    assert not use.expected("/add")  # its load must wait for the lock: sending it ahead is waste
