"""SQLiteStore at start: a missing folder is "down", a path that cannot work is a ConfigError.

An app whose SQLite folder does not exist yet (a volume not mounted yet) starts: one log
line names the path, session routes answer 503, and once the folder is there the next
request succeeds on a file created with its schema. A path that waiting will not fix (a
folder, a file as a folder, a file that is not a database, a read-only file) fails at start.
A file of the previous schema (no device column, no user index) is upgraded whenever the
store first opens it: at start, or once its folder appears or a lock held at start goes.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest
from flask import Flask, session

from satchel import ConfigError, Satchel, SQLiteStore
from satchel.errors import StoreUnavailable
from satchel.store import Record
from tests.clock import FakeClock
from tests.services import closed_port, need_module
from tests.stores.contract_users import keys, login
from tests.stores.test_sqlite import old_file

FOREVER = 9e12
TABLES = {"satchel_sessions", "satchel_fields", "satchel_locks"}


def session_app(store: str | SQLiteStore) -> Flask:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE=store)
    Satchel(app)

    @app.get("/set")
    def set_() -> str:
        session["n"] = session.get("n", 0) + 1
        return "set"

    @app.get("/get")
    def get() -> str:
        return str(session.get("n"))

    @app.get("/plain")
    def plain() -> str:
        return "plain"

    return app


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    return names


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "satchel" and r.levelno == logging.WARNING]


def test_an_app_on_a_missing_folder_starts_answers_503_and_works_once_it_exists(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "volume" / "app"  # neither exists: a volume not mounted yet
    path = folder / "sessions.sqlite3"
    with caplog.at_level(logging.WARNING, logger="satchel"):
        app = session_app(f"sqlite:///{path}")  # absolute: sqlite:////...
        client = app.test_client()
        [line] = warnings(caplog)
        assert str(path) in line and "does not exist" in line and "503" in line
        for _ in range(3):
            down = client.get("/set")
            assert down.status_code == 503 and down.headers["Retry-After"]
        assert client.get("/plain").data == b"plain"
        assert not folder.exists()  # nothing created while down
        folder.mkdir(parents=True)
        assert client.get("/set").status_code == 200
        assert client.get("/set").status_code == 200
        assert client.get("/get").data == b"2"
        assert len(warnings(caplog)) == 1  # the start line only: not per request, not on reopening
    assert TABLES <= tables(path)
    Satchel.store_of(app).close()  # type: ignore[attr-defined]


def test_a_store_built_on_a_missing_folder_opens_with_its_schema_once_the_folder_is_there(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "not-yet"
    with caplog.at_level(logging.WARNING, logger="satchel"):
        store = SQLiteStore(folder / "sessions.sqlite3")
        with pytest.raises(StoreUnavailable, match="does not exist"):
            store.load("k")
        with pytest.raises(StoreUnavailable, match="does not exist"):
            store.create("k", Record({"a": b"1"}, 0.0, 0.0, FOREVER))
        folder.mkdir()
        store.create("k", Record({"a": b"1"}, 0.0, 0.0, FOREVER))
        loaded = store.load("k")
    assert loaded is not None and loaded.fields == {"a": b"1"}
    assert len(warnings(caplog)) == 1 and str(folder) in warnings(caplog)[0]
    store.close()


def test_a_relative_path_with_a_missing_folder_is_down_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore(os.path.join("data", "sessions.sqlite3"))
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.load("k")
    assert not (tmp_path / "data").exists()  # a store given a path creates no folder
    (tmp_path / "data").mkdir()
    assert store.load("k") is None
    assert TABLES <= tables(tmp_path / "data" / "sessions.sqlite3")
    store.close()


def test_a_relative_url_still_creates_its_folder_in_the_instance_folder(tmp_path: Path) -> None:
    app = Flask(__name__, instance_path=str(tmp_path / "instance"))
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE="sqlite:///sub/dir/s.sqlite3")
    Satchel(app)
    assert TABLES <= tables(tmp_path / "instance" / "sub" / "dir" / "s.sqlite3")
    Satchel.store_of(app).close()  # type: ignore[attr-defined]


def test_memory_databases_are_unaffected(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="satchel"):
        store = SQLiteStore(":memory:")
        store.create("k", Record({"a": b"1"}, 0.0, 0.0, FOREVER))
        assert store.load("k") is not None
    assert warnings(caplog) == []
    store.close()


def read_only_header(path: Path) -> None:
    """An SQLite file whose header says it may only be read (write version 3): SQLite opens
    it read-only, as it does a file or folder this process may not write, even as root."""
    store = SQLiteStore(path)
    store.close()
    data = bytearray(path.read_bytes())
    data[18] = 3
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("make", "message"), [
    ("folder", "is a folder"),
    ("file-as-folder", "not a folder"),
    ("junk", "not an SQLite database"),
    ("read-only", "cannot be written"),
])
def test_a_path_that_cannot_work_is_a_config_error_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, make: str, message: str) -> None:
    path = tmp_path / "sessions.sqlite3"
    if make == "folder":
        path.mkdir()
    elif make == "file-as-folder":
        (tmp_path / "file").write_text("x")
        path = tmp_path / "file" / "sessions.sqlite3"
    elif make == "junk":
        path.write_bytes(b"this is not an sqlite file" * 100)
    else:
        read_only_header(path)
    with caplog.at_level(logging.WARNING, logger="satchel"):
        with pytest.raises(ConfigError, match=message) as info:
            SQLiteStore(path)
        assert str(path) in str(info.value)
        with pytest.raises(ConfigError, match=message) as info:
            session_app(f"sqlite:///{path}")
        assert f"sqlite:///{path}" in str(info.value)
    assert warnings(caplog) == []  # an error, not a "down" line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write any file")
@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_file_or_folder_is_a_config_error_at_start(tmp_path: Path,
                                                               what: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "sessions.sqlite3"
    if what == "file":
        SQLiteStore(path).close()
        path.chmod(0o444)
    else:
        folder.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match=r"cannot be written|not writable"):
            SQLiteStore(path)
    finally:
        folder.chmod(0o755)
        if path.exists():
            path.chmod(0o644)


def test_a_lock_held_at_start_is_down_not_a_config_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "sessions.sqlite3"
    SQLiteStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.WARNING, logger="satchel"):
            store = SQLiteStore(path, busy_timeout=0.01)
        assert len(warnings(caplog)) == 1 and "locked" in warnings(caplog)[0]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.create("k", Record({"a": b"1"}, 0.0, 0.0, FOREVER))
    assert store.load("k") is not None
    store.close()


def purge_output(store: str) -> tuple[int, str, BaseException | None]:
    app = Flask(__name__)
    app.config.update(SECRET_KEY="k" * 32, SATCHEL_STORE_TIMEOUT=0.5)
    Satchel(app, store=store)
    try:
        result = app.test_cli_runner().invoke(args=["satchel", "purge"])
    finally:
        Satchel.store_of(app).close()  # type: ignore[attr-defined]
    return result.exit_code, result.output, result.exception


def test_purge_on_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "sessions.sqlite3"
    code, output, exception = purge_output(f"sqlite:///{path}")
    assert code != 0
    assert not isinstance(exception, StoreUnavailable)  # a message, not a traceback
    assert output.startswith("Error: ") and str(tmp_path / "nope") in output
    assert "does not exist" in output and "nothing was purged" in output


def test_purge_while_postgres_is_down_is_a_clear_error() -> None:
    need_module("psycopg")
    code, output, exception = purge_output(f"postgresql://postgres@127.0.0.1:{closed_port()}/test")
    assert code != 0
    assert not isinstance(exception, StoreUnavailable)
    assert output.startswith("Error: ") and "unavailable" in output


def test_a_volume_mounted_later_with_a_file_of_the_previous_schema_is_upgraded_when_opened(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "volume"
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, logger="satchel"):
        store = SQLiteStore(folder / "sessions.sqlite3", clock=clock)
        for call in (lambda: store.sessions_of("alice"), store.stats,
                     lambda: list(store.all_sessions()), lambda: store.delete_user("alice")):
            with pytest.raises(StoreUnavailable, match="does not exist"):
                call()
        folder.mkdir()  # the volume, with the sessions of the previous version
        old_file(folder / "sessions.sqlite3", clock)
        assert keys(store.sessions_of("alice")) == ["old"]
        login(store, clock, "new", "alice", device="Firefox")
        assert [info.device for info in store.sessions_of("alice")] == [None, "Firefox"]
        assert store.stats().sessions == 2
    assert len(warnings(caplog)) == 1
    assert "satchel_sessions_user" in tables(folder / "sessions.sqlite3")
    store.close()


def test_a_file_of_the_previous_schema_locked_at_start_is_upgraded_once_the_lock_goes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, clock = tmp_path / "sessions.sqlite3", FakeClock()
    old_file(path, clock)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.WARNING, logger="satchel"):
            store = SQLiteStore(path, clock=clock, busy_timeout=0.01)
        assert len(warnings(caplog)) == 1 and "locked" in warnings(caplog)[0]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert keys(store.sessions_of("alice")) == ["old"]
    loaded = store.load("old")
    assert loaded is not None and loaded.device is None and loaded.fields == {"a": b"1"}
    store.close()


def test_a_read_only_file_of_the_previous_schema_is_a_config_error_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "sessions.sqlite3"
    old_file(path, FakeClock())
    data = bytearray(path.read_bytes())
    data[18] = 3  # read-only to SQLite (see read_only_header): the upgrade cannot be written
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="satchel"):
        with pytest.raises(ConfigError, match="cannot be written"):
            SQLiteStore(path)
    assert warnings(caplog) == []
