"""Purging a backlog of expired sessions (``purge_expired``) on SQLite and PostgreSQL: every
expired session goes with its fields and its place in the user index, nothing live goes,
and a purge stopped halfway leaves a store that a second purge finishes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import satchel.stores.sqlite.purge as sqlite_purge
from satchel import SQLiteStore
from satchel.errors import StoreUnavailable
from satchel.store import Record
from tests.clock import FakeClock
from tests.services import postgres_store


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    clock = FakeClock()
    if request.param == "sqlite":
        store = SQLiteStore(tmp_path / "s.sqlite3", clock=clock)
        store.clock = clock  # type: ignore[attr-defined]
        yield store
        store.close()
    else:
        with postgres_store(clock=clock) as pg:
            pg.clock = clock
            yield pg


def fill(store: Any, expired: int, live: int) -> None:
    """``expired`` sessions expiring in 10 s (users u0..u4), then ``live`` ones (users
    u0..u4 too, one hour); the clock then moves 11 s on."""
    clock = store.clock
    for i in range(expired):
        store.create(f"dead{i:04d}", Record({"a": b"1", "b": b"2"}, clock.now, clock.now,
                                            clock.now + 10 + i * 1e-3, user=f"u{i % 5}"))
    for i in range(live):
        store.create(f"live{i:04d}", Record({"a": b"1"}, clock.now, clock.now,
                                            clock.now + 3600, user=f"u{i % 5}"))
    clock.advance(11)


def purge_all(store: Any, batch: int = 1000) -> int:
    total = 0
    while deleted := store.purge_expired(batch):
        total += deleted
    return total


def test_purge_deletes_every_expired_session_and_keeps_the_live_ones(store: Any) -> None:
    fill(store, expired=150, live=20)
    assert purge_all(store, batch=64) == 150
    assert store.count_expired() == 0
    assert all(store.expired(f"dead{i:04d}") is None for i in range(150))  # really gone
    assert all(store.load(f"live{i:04d}") is not None for i in range(20))
    assert store.stats().sessions == 20
    for user in range(5):  # the user index lists the live sessions only
        assert sorted(s.key for s in store.sessions_of(f"u{user}")) == [
            f"live{i:04d}" for i in range(20) if i % 5 == user]


def test_a_purged_user_index_has_nothing_left_to_delete(store: Any) -> None:
    fill(store, expired=40, live=0)
    purge_all(store)
    assert store.delete_user("u1") == []
    assert [s.key for s in store.all_sessions()] == []


def test_purge_leaves_fields_of_no_purged_session(tmp_path: Path) -> None:
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "s.sqlite3", clock=clock)
    store.clock = clock  # type: ignore[attr-defined]
    fill(store, expired=100, live=3)
    purge_all(store, batch=30)
    rows = store._connect().execute("SELECT DISTINCT key FROM satchel_fields").fetchall()
    assert sorted(row[0] for row in rows) == ["live0000", "live0001", "live0002"]


def test_purge_deletes_locks_past_their_lease_only(store: Any) -> None:
    assert store.purge_expired() == 0  # before any lock: PostgreSQL has no lock table yet
    assert store.acquire_lock("old", "t1", lease=5)
    store.clock.advance(10)
    assert store.acquire_lock("held", "t2", lease=30)
    store.purge_expired()
    if isinstance(store, SQLiteStore):
        rows = store._connect().execute("SELECT key FROM satchel_locks").fetchall()
    else:
        with store.pool.connection() as conn:
            rows = conn.execute(f"SELECT key FROM {store.table}_locks").fetchall()
    assert rows == [("held",)]
    assert store.release_lock("held", "t2")


def test_sqlite_purge_keeps_a_session_created_live_over_an_expired_key_meanwhile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The keys are read first and deleted in later transactions: one created again, live,
    in between (the last to expire is in the last transaction) stays."""
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "s.sqlite3", clock=clock)
    store.clock = clock  # type: ignore[attr-defined]
    fill(store, expired=200, live=0)
    monkeypatch.setattr(sqlite_purge, "_FIRST_CHUNK", 10)
    monkeypatch.setattr(sqlite_purge, "_MAX_CHUNK", 10)
    pauses: list[float] = []

    def pause(seconds: float) -> None:
        if not pauses:  # after the first transaction
            store.create("dead0199", Record({"a": b"new"}, clock.now, clock.now, clock.now + 60))
        pauses.append(seconds)

    monkeypatch.setattr(sqlite_purge.time, "sleep", pause)
    assert store.purge_expired(batch=1000) == 199
    assert len(pauses) >= 20  # a pause after each of the short transactions
    record = store.load("dead0199")
    assert record is not None and record.fields == {"a": b"new"}


def test_sqlite_purge_stopped_halfway_loses_nothing_live(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    store = SQLiteStore(tmp_path / "s.sqlite3", clock=clock)
    store.clock = clock  # type: ignore[attr-defined]
    fill(store, expired=100, live=10)
    monkeypatch.setattr(sqlite_purge, "_FIRST_CHUNK", 10)
    monkeypatch.setattr(sqlite_purge, "_MAX_CHUNK", 10)
    calls: list[float] = []

    def fail_on_third(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 3:
            raise StoreUnavailable("the disk went away")

    monkeypatch.setattr(sqlite_purge.time, "sleep", fail_on_third)
    with pytest.raises(StoreUnavailable):
        store.purge_expired(batch=1000)
    assert store.count_expired() == 70  # three transactions committed, the rest waits
    assert all(store.load(f"live{i:04d}") is not None for i in range(10))
    monkeypatch.setattr(sqlite_purge.time, "sleep", lambda seconds: None)
    assert purge_all(store) == 70
    assert store.stats().sessions == 10
    # SQLite's own checkpoint stays off: the store's run after a write, outside its lock
    assert store._connect().execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
