"""``flask satchel stats``, ``list`` and ``revoke``, through Flask's CLI runner, on every
server-side store (the real servers, as in tests/modes.py), and on a store without the
user index and inventory (tests/spy.py's wrapper has neither).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from flask import Flask, session
from flask.testing import FlaskClient

from satchel import MemoryStore, Satchel, SQLiteStore, StoreUnavailable, ids
from satchel.store import Record, SessionInfo, StoreStats
from tests.clock import FakeClock
from tests.modes import SERVER_MODES, make_store
from tests.spy import SpyStore

AGENT = "Mozilla/5.0 Firefox/128.0"
START = "2027-01-15T08:00:00Z"  # FakeClock's start, 1_800_000_000


class DownStore(MemoryStore):
    """A real memory store whose user index and inventory cannot reach their server."""

    def sessions_of(self, user: str) -> list[SessionInfo]:
        raise StoreUnavailable("cannot reach the session store (test)")

    def delete_user(self, user: str, keep: str | None = None) -> list[str]:
        raise StoreUnavailable("cannot reach the session store (test)")

    def stats(self) -> StoreStats:
        raise StoreUnavailable("cannot reach the session store (test)")

    def all_sessions(self) -> Iterator[SessionInfo]:
        yield from super().all_sessions()  # fails part way through the walk
        raise StoreUnavailable("cannot reach the session store (test)")


def make_app(store: Any, clock: FakeClock | None = None, **config: Any) -> Flask:
    app = Flask(__name__)
    app.config.update({"TESTING": True, "SECRET_KEY": "k" * 32, **config})
    Satchel(app, store=store, clock=clock or FakeClock())

    @app.post("/login/<name>")
    def login(name: str) -> str:
        session["_user_id"] = name
        return "in"

    @app.post("/visit")
    def visit() -> str:
        session["seen"] = True
        return "ok"

    @app.get("/me")
    def me() -> dict[str, Any]:
        return {"data": dict(session), "handle": session.handle}  # type: ignore[attr-defined]

    return app


def cli(app: Flask, *args: str) -> Result:
    return app.test_cli_runner().invoke(args=["satchel", *args])


class Browser:
    """One browser's session on ``app``: its handle, session id and storage key."""

    def __init__(self, app: Flask, path: str, agent: str = AGENT) -> None:
        self.client: FlaskClient = app.test_client()
        self.client.environ_base.update(HTTP_USER_AGENT=agent, REMOTE_ADDR="203.0.113.9")
        assert self.client.post(path).status_code == 200
        cookie = self.client.get_cookie("session")
        assert cookie is not None
        self.sid = cookie.value[: ids.ID_LENGTH]
        self.key = ids.storage_key(self.sid)
        self.handle: str = self.client.get("/me").json["handle"]  # type: ignore[index]

    def data(self) -> dict[str, Any]:
        return self.client.get("/me").json["data"]  # type: ignore[index,no-any-return]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=SERVER_MODES)
def app(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path) -> Iterator[Flask]:
    with ExitStack() as cleanup:
        yield make_app(make_store(request.param, clock, tmp_path, cleanup), clock)


@pytest.fixture
def browsers(app: Flask, clock: FakeClock) -> dict[str, Browser]:
    made = {"alice1": Browser(app, "/login/alice"), "alice2": Browser(app, "/login/alice"),
            "bob": Browser(app, "/login/bob", agent="curl/8.5"), "anon": Browser(app, "/visit")}
    clock.advance(120)  # past the grace period: no tombstone of a rotated id is left
    return made


def assert_no_ids(output: str, browsers: dict[str, Browser]) -> None:
    for browser in browsers.values():
        assert browser.sid not in output
        assert browser.key not in output


def test_list_user_shows_each_session_with_its_handle_times_and_device(
        app: Flask, browsers: dict[str, Browser]) -> None:
    result = cli(app, "list", "--user", "alice")
    assert result.exit_code == 0, result.output
    header, *rows = result.output.splitlines()
    assert header.split() == ["HANDLE", "USER", "CREATED", "LAST", "SEEN", "DEVICE"]
    assert {row.split()[0] for row in rows} == {browsers["alice1"].handle,
                                                browsers["alice2"].handle}
    assert len(rows) == 2
    for row in rows:
        assert row.split()[1:4] == ["alice", START, START]
        assert row.endswith(f"{AGENT} (203.0.113.9)")
    assert_no_ids(result.output, browsers)


def test_list_walks_the_whole_store(app: Flask, browsers: dict[str, Browser]) -> None:
    result = cli(app, "list")
    assert result.exit_code == 0, result.output
    rows = result.output.splitlines()[1:]
    assert sorted(row.split()[0] for row in rows) == sorted(b.handle for b in browsers.values())
    assert any(row.split()[:2] == [browsers["anon"].handle, "-"] for row in rows)
    assert_no_ids(result.output, browsers)


@pytest.mark.parametrize("args", [("list", "--json"), ("list", "--json", "--user", "bob")])
def test_list_json(app: Flask, browsers: dict[str, Browser], args: tuple[str, ...]) -> None:
    result = cli(app, *args)
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    bob = {"handle": browsers["bob"].handle, "user": "bob", "created": START,
           "last_seen": START, "expires": "2027-02-15T08:00:00Z",
           "device": "curl/8.5 (203.0.113.9)"}
    assert bob in listed
    assert len(listed) == (1 if "--user" in args else 4)
    assert_no_ids(result.output, browsers)


def test_list_of_a_user_without_sessions(app: Flask, browsers: dict[str, Browser]) -> None:
    result = cli(app, "list", "--user", "carol")
    assert (result.exit_code, result.output) == (0, "No sessions.\n")
    assert json.loads(cli(app, "list", "--user", "carol", "--json").output) == []


def test_list_escapes_control_characters_a_user_or_a_browser_chose(app: Flask,
                                                                   clock: FakeClock) -> None:
    Browser(app, "/login/mallory%1B%5B2J", agent="evil\x1b]0;owned\x07")
    for args in (("list",), ("list", "--user", "mallory\x1b[2J")):
        result = cli(app, *args)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output
        assert "\x07" not in result.output
        assert "mallory\\x1b[2J" in result.output
        assert "evil ]0;owned (203.0.113.9)" in result.output  # recorded printable only
    # A device stored with control characters (by an older satchel, or another writer of
    # the store) is escaped when listed.
    store = Satchel.store_of(app)  # type: ignore[attr-defined]
    store.create(ids.storage_key(ids.new_id()), Record(
        {"n": b"1"}, clock.now, clock.now, clock.now + 3600,
        user="mallory\x1b[2J", device="raw\x1b]0;owned\x07"))
    for args in (("list",), ("list", "--user", "mallory\x1b[2J")):
        result = cli(app, *args)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output
        assert "raw\\x1b]0;owned\\x07" in result.output


def test_stats_counts_live_sessions_and_users(app: Flask, browsers: dict[str, Browser],
                                              clock: FakeClock) -> None:
    result = cli(app, "stats")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"Store: {Satchel.store_of(app)!r}"  # type: ignore[attr-defined]
    assert lines[1] == "Live sessions: 4"
    assert lines[2] == "Users: 2"
    assert len(lines) == 3


def test_stats_and_list_leave_out_what_a_rotation_keeps_for_requests_in_flight(
        app: Flask, browsers: dict[str, Browser]) -> None:
    """A login rotates the id and keeps a tombstone of the old one for the grace period: a
    record in the store, but not a session."""
    assert browsers["anon"].client.post("/login/carol").status_code == 200  # a rotation
    assert cli(app, "stats").output.splitlines()[1:] == ["Live sessions: 4", "Users: 3"]
    listed = cli(app, "list").output
    rows = [line for line in listed.splitlines()[1:] if line.strip()]  # under the header
    assert len(rows) == 4, listed
    assert sum("carol" in row for row in rows) == 1


def test_revoke_a_handle_ends_that_session_only(app: Flask, browsers: dict[str, Browser]) -> None:
    result = cli(app, "revoke", "--handle", browsers["alice1"].handle)
    assert (result.exit_code, result.output) == (0, "Ended 1 session.\n")
    assert browsers["alice1"].data() == {}
    assert browsers["alice2"].data() == {"_user_id": "alice"}
    again = cli(app, "revoke", "--handle", browsers["alice1"].handle)
    assert again.exit_code == 0
    assert again.output == "Ended 0 sessions: that session had ended already.\n"


def test_revoke_a_user_ends_all_their_sessions(app: Flask, browsers: dict[str, Browser]) -> None:
    result = cli(app, "revoke", "--user", "alice")
    assert (result.exit_code, result.output) == (0, "Ended 2 session(s) of user 'alice'.\n")
    assert browsers["alice1"].data() == browsers["alice2"].data() == {}
    assert browsers["bob"].data() == {"_user_id": "bob"}
    assert browsers["anon"].data() == {"seen": True}


@pytest.mark.parametrize("args", [(), ("--user", "alice", "--handle", "x")])
def test_revoke_takes_exactly_one_of_user_and_handle(app: Flask, args: tuple[str, ...]) -> None:
    result = cli(app, "revoke", *args)
    assert result.exit_code == 2
    assert "exactly one of --user and --handle" in result.output


@pytest.mark.parametrize("handle", ["not-a-handle", "A" * 64])
def test_revoke_a_bad_handle_is_a_clear_error(app: Flask, browsers: dict[str, Browser],
                                              handle: str) -> None:
    result = cli(app, "revoke", "--handle", handle)
    assert result.exit_code == 2
    assert "not a session handle of this app" in result.output
    assert "Traceback" not in result.output
    assert all(browser.data() for browser in browsers.values())


def test_a_handle_made_under_another_secret_key_is_refused(browsers: dict[str, Browser],
                                                           clock: FakeClock) -> None:
    other = make_app(MemoryStore(clock=clock), clock, SECRET_KEY="o" * 32)
    result = cli(other, "revoke", "--handle", browsers["bob"].handle)
    assert result.exit_code == 2
    assert "not a session handle of this app" in result.output


SESSION_COMMANDS = [("stats",), ("list",), ("list", "--user", "alice"), ("list", "--json"),
                    ("revoke", "--user", "alice")]


@pytest.mark.parametrize("args", [*SESSION_COMMANDS, ("revoke", "--handle", "A" * 64)])
def test_cookie_mode_says_sessions_cannot_be_listed_or_revoked(args: tuple[str, ...]) -> None:
    result = cli(make_app("cookie://"), *args)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ")
    assert "cookie" in result.output
    assert len(result.output.splitlines()) == 1


@pytest.mark.parametrize("args", SESSION_COMMANDS)
def test_a_store_without_the_abilities_says_so(args: tuple[str, ...]) -> None:
    store = SpyStore(MemoryStore())  # a store with neither UserIndex nor Inventory
    result = cli(make_app(store), *args)
    assert result.exit_code == 1
    assert repr(store) in result.output
    assert "UserIndex" in result.output or "Inventory" in result.output


def test_revoke_a_handle_needs_no_user_index(clock: FakeClock) -> None:
    app = make_app(SpyStore(MemoryStore(clock=clock)), clock)
    anon = Browser(app, "/visit")
    result = cli(app, "revoke", "--handle", anon.handle)
    assert (result.exit_code, result.output) == (0, "Ended 1 session.\n")
    assert anon.data() == {}


@pytest.mark.parametrize("args", SESSION_COMMANDS)
def test_an_unreachable_store_is_a_one_line_error(clock: FakeClock,
                                                  args: tuple[str, ...]) -> None:
    app = make_app(DownStore(clock=clock), clock)
    Browser(app, "/visit")
    result = cli(app, *args)
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == ("Error: cannot reach the session store (test)")
    assert "Traceback" not in result.output


@pytest.mark.parametrize("args", SESSION_COMMANDS)
def test_an_sqlite_store_whose_folder_is_missing_is_a_one_line_error_until_it_exists(
        clock: FakeClock, tmp_path: Path, args: tuple[str, ...]) -> None:
    store = SQLiteStore(tmp_path / "not-mounted" / "sessions.sqlite3", clock=clock)  # down
    app = make_app(store, clock)
    result = cli(app, *args)
    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line.startswith("Error: SQLite store ") and "does not exist" in line
    (tmp_path / "not-mounted").mkdir()
    assert cli(app, *args).exit_code == 0
    store.close()


def test_listing_every_session_needs_the_secret_key(clock: FakeClock) -> None:
    app = make_app(MemoryStore(clock=clock), clock)
    Browser(app, "/visit")
    app.config["SECRET_KEY"] = None
    result = cli(app, "list")
    assert result.exit_code == 1
    assert "SECRET_KEY" in result.output
