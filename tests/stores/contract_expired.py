"""The contract of ``satchel.store.ExpiredLookup``: a store that keeps expired records until
they are purged tells one from a missing record. Mixed into the ``StoreContract`` subclasses
of the stores that have it (memory, SQLite, PostgreSQL); Redis drops a key at its TTL and
cannot (tests/stores/redis_shared.py)."""

from __future__ import annotations

from typing import Any

from satchel.store import ExpiredLookup, Patch, Purgeable, Record, SessionInfo, Updated
from tests.clock import FakeClock

HOUR = 3600.0


class ExpiredLookupContract:
    def test_is_an_expired_lookup(self, store: Any) -> None:
        assert isinstance(store, ExpiredLookup)

    def test_an_expired_record_is_found_with_its_metadata(
            self, store: Any, clock: FakeClock) -> None:
        record = Record({"a": b"1"}, clock.now - 50, clock.now - 5, clock.now + 10,
                        permanent=True, user="alice", device="Firefox on Linux, 127.0.0.1")
        store.create("k1", record)
        assert store.expired("k1") is None  # live
        clock.advance(10)  # expires_at <= now: expired
        assert store.load("k1") is None
        found = store.expired("k1")
        assert found == SessionInfo("k1", record.created_at, record.last_seen,
                                    record.expires_at, "alice", "Firefox on Linux, 127.0.0.1",
                                    True)
        assert store.expired("k1") == found  # a read: the record stays until deleted
        store.delete("k1")
        assert store.expired("k1") is None

    def test_missing_deleted_and_live_records_are_not_expired(
            self, store: Any, clock: FakeClock) -> None:
        assert store.expired("0" * 64) is None
        store.create("gone", Record({}, clock.now, clock.now, clock.now + 10))
        store.delete("gone")
        store.create("live", Record({"a": b"1"}, clock.now, clock.now, clock.now + 10))
        clock.advance(9)
        assert store.expired("gone") is None and store.expired("live") is None
        assert store.update("live", Patch(last_seen=clock.now, expires_at=clock.now + 10))
        clock.advance(9)
        assert store.expired("live") is None  # the touch slid its deadline

    def test_what_misses_an_expired_record_does_not_drop_it(
            self, store: Any, clock: FakeClock) -> None:
        store.create("k1", Record({"a": b"1"}, clock.now, clock.now, clock.now + 10))
        clock.advance(11)
        assert store.load("k1") is None
        assert store.update("k1", Patch()) == Updated.GONE
        assert store.update("k1", Patch(set={"b": b"2"})) == Updated.GONE
        assert store.sessions_of("alice") == []
        found = store.expired("k1")
        assert found is not None and found.expires_at == clock.now - 1

    def test_a_record_created_over_an_expired_one_or_purged_is_not_expired(
            self, store: Any, clock: FakeClock) -> None:
        for key in ("replaced", "purged"):
            store.create(key, Record({}, clock.now, clock.now, clock.now + 10, user="bob"))
        clock.advance(11)
        store.create("replaced", Record({"n": b"1"}, clock.now, clock.now, clock.now + HOUR))
        assert store.expired("replaced") is None
        assert [info.key for info in store.sessions_of("bob")] == []
        purgeable: Purgeable = store
        while purgeable.purge_expired():
            pass
        assert store.expired("purged") is None
