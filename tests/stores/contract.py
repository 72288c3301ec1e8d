"""The store contract suite: every store subclasses ``StoreContract``.

A subclass provides the ``store`` fixture, built with the ``clock`` fixture
so expiry is tested without sleeping. The user index part of the contract is
in :mod:`tests.stores.contract_users`.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

import pytest

from satchel.locking import lock_key
from satchel.store import Lockable, Patch, Prefetching, Purgeable, Record, Store, Updated
from tests.clock import FakeClock
from tests.stores.contract_users import UserIndexContract

HOUR = 3600.0


def make_record(clock: FakeClock, ttl: float = HOUR, **fields: bytes) -> Record:
    return Record(dict(fields), clock.now, clock.now, clock.now + ttl)


class StoreContract(UserIndexContract):
    @pytest.fixture
    def clock(self) -> FakeClock:
        return FakeClock()

    @pytest.fixture
    def store(self, clock: FakeClock) -> Any:
        raise NotImplementedError

    def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store)

    def test_load_missing_is_none(self, store: Store) -> None:
        assert store.load("0" * 64) is None

    def test_create_then_load_round_trips(self, store: Store, clock: FakeClock) -> None:
        record = Record({"a": b"1", "b": b'{"x":[1,2]}'}, clock.now - 5, clock.now - 1,
                        clock.now + HOUR, permanent=True, user="alice")
        store.create("k1", record)
        loaded = store.load("k1")
        assert loaded == record

    def test_create_existing_key_fails(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, a=b"1"))
        with pytest.raises(KeyError):
            store.create("k1", make_record(clock, a=b"2"))
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {"a": b"1"}

    def test_create_replaces_an_expired_record(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, ttl=10, old=b"1"))
        clock.advance(11)
        store.create("k1", make_record(clock, new=b"2"))
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {"new": b"2"}

    def test_empty_record_round_trips(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock))
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {}

    def test_keys_are_isolated(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, a=b"1"))
        store.create("k2", make_record(clock, a=b"2"))
        store.update("k1", Patch(set={"a": b"3"}))
        store.delete("k2")
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {"a": b"3"}
        assert store.load("k2") is None

    def test_update_merges_per_field(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, keep=b"0", a=b"1"))
        assert store.update("k1", Patch(set={"a": b"2"})) == Updated.KEPT
        assert store.update("k1", Patch(set={"b": b"3"})) == Updated.KEPT
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {"keep": b"0", "a": b"2", "b": b"3"}

    def test_update_deletes_fields(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, a=b"1", b=b"2"))
        assert store.update("k1", Patch(delete=frozenset({"a", "never-there"})))
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {"b": b"2"}

    def test_update_clear_then_set(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, a=b"1", b=b"2"))
        assert store.update("k1", Patch(set={"c": b"3"}, clear=True))
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {"c": b"3"}

    def test_update_that_empties_with_delete_if_empty_deletes_the_record(
            self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, a=b"1", b=b"2"))
        patch = Patch(delete=frozenset({"a", "b"}), delete_if_empty=True)
        assert store.update("k1", patch) == Updated.EMPTIED
        assert store.load("k1") is None
        assert store.update("k1", Patch(set={"c": b"3"})) == Updated.GONE  # no resurrection

    def test_delete_if_empty_keeps_a_record_that_still_has_fields(
            self, store: Store, clock: FakeClock) -> None:
        # A parallel commit added "b" after this request loaded {"a"}: the store, not the
        # request's own copy, decides that the record is not empty.
        store.create("k1", make_record(clock, a=b"1"))
        assert store.update("k1", Patch(set={"b": b"2"})) == Updated.KEPT
        assert store.update("k1", Patch(delete=frozenset({"a"}), delete_if_empty=True,
                                        permanent=False)) == Updated.KEPT
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {"b": b"2"}

    def test_delete_if_empty_with_clear_or_set(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, a=b"1"))
        assert store.update("k1", Patch(clear=True, set={"n": b"1"},
                                        delete_if_empty=True)) == Updated.KEPT
        assert store.update("k1", Patch(clear=True, delete_if_empty=True)) == Updated.EMPTIED
        assert store.load("k1") is None
        assert store.update("k1", Patch(delete_if_empty=True)) == Updated.GONE

    def test_delete_if_empty_on_an_empty_record_without_changes(
            self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock))
        assert store.update("k1", Patch(last_seen=clock.now, expires_at=clock.now + HOUR,
                                        delete_if_empty=True)) == Updated.EMPTIED
        assert store.load("k1") is None

    def test_empty_patch_only_tells_whether_the_record_is_live(
            self, store: Store, clock: FakeClock) -> None:
        record = make_record(clock, ttl=10, a=b"1")
        store.create("k1", record)
        assert store.update("k1", Patch()) == Updated.KEPT
        assert store.load("k1") == record
        assert store.update("ghost", Patch()) == Updated.GONE
        clock.advance(10)
        assert store.update("k1", Patch()) == Updated.GONE

    def test_update_missing_returns_false_and_creates_nothing(self, store: Store) -> None:
        assert store.update("ghost", Patch(set={"a": b"1"}, expires_at=9e12)) == Updated.GONE
        assert store.load("ghost") is None

    def test_update_after_delete_does_not_resurrect(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, user=b"1"))
        store.delete("k1")
        outcome = store.update("k1", Patch(set={"cart": b"[]"}, expires_at=clock.now + HOUR))
        assert outcome == Updated.GONE
        assert store.load("k1") is None

    def test_update_expired_returns_false(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, ttl=10, a=b"1"))
        clock.advance(10)
        outcome = store.update("k1", Patch(set={"a": b"2"}, expires_at=clock.now + HOUR))
        assert outcome == Updated.GONE
        assert store.load("k1") is None

    def test_update_metadata(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, a=b"1"))
        clock.advance(60)
        assert store.update("k1", Patch(last_seen=clock.now, expires_at=clock.now + 2 * HOUR,
                                        permanent=True, user="bob"))
        loaded = store.load("k1")
        assert loaded is not None
        assert (loaded.last_seen, loaded.expires_at) == (clock.now, clock.now + 2 * HOUR)
        assert loaded.permanent is True and loaded.user == "bob"
        assert loaded.fields == {"a": b"1"}
        assert store.update("k1", Patch(user="", permanent=False))
        loaded = store.load("k1")
        assert loaded is not None and loaded.user is None and loaded.permanent is False

    def test_each_metadata_attribute_alone_changes_only_itself(
            self, store: Store, clock: FakeClock) -> None:
        store.create("k1", Record({"a": b"1"}, clock.now, clock.now, clock.now + HOUR,
                                  user="alice"))
        assert store.update("k1", Patch(permanent=True)) == Updated.KEPT
        assert store.update("k1", Patch(user="bob")) == Updated.KEPT
        clock.advance(60)
        assert store.update("k1", Patch(last_seen=clock.now)) == Updated.KEPT
        loaded = store.load("k1")
        assert loaded is not None
        assert (loaded.permanent, loaded.user, loaded.last_seen) == (True, "bob", clock.now)
        assert (loaded.created_at, loaded.expires_at) == (clock.now - 60, clock.now - 60 + HOUR)
        assert store.update("k1", Patch(expires_at=clock.now + 2 * HOUR)) == Updated.KEPT
        assert store.update("k1", Patch(user="")) == Updated.KEPT
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {"a": b"1"}
        assert (loaded.permanent, loaded.user, loaded.last_seen, loaded.expires_at) == (
            True, None, clock.now, clock.now + 2 * HOUR)

    def test_setting_fields_alone_never_writes_into_a_gone_record(
            self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, ttl=10, a=b"1"))
        assert store.update("k1", Patch(set={"a": b"2", "b": b"3"})) == Updated.KEPT
        clock.advance(10)
        assert store.update("k1", Patch(set={"a": b"4"})) == Updated.GONE
        assert store.update("k1", Patch(set={"a": b"4", "c": b"5"})) == Updated.GONE
        assert store.load("k1") is None
        assert store.update("ghost", Patch(set={"a": b"1", "b": b"2"})) == Updated.GONE
        assert store.load("ghost") is None

    def test_update_extends_life(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, ttl=100, a=b"1"))
        clock.advance(90)
        assert store.update("k1", Patch(last_seen=clock.now, expires_at=clock.now + 100))
        clock.advance(90)
        assert store.load("k1") is not None

    def test_expired_record_is_a_miss(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, ttl=100, a=b"1"))
        clock.advance(99.5)
        assert store.load("k1") is not None
        clock.advance(0.5)
        assert store.load("k1") is None

    def test_delete(self, store: Store, clock: FakeClock) -> None:
        store.create("k1", make_record(clock, a=b"1"))
        store.delete("k1")
        assert store.load("k1") is None

    def test_delete_missing_is_not_an_error(self, store: Store) -> None:
        store.delete("never-existed")

    def test_awkward_names_and_binary_values(self, store: Store, clock: FakeClock) -> None:
        fields = {"": b"", "a.b": b"\x00\xff", "$.x": b"1", "'; DROP TABLE x; --": b"2",
                  "naïve ✓": "ü".encode(), " t": b"3", "x" * 300: b"y" * 100_000}
        store.create("k1", make_record(clock, **fields))
        store.update("k1", Patch(set={"a.b": b"\x00"}, delete=frozenset({"$.x"})))
        loaded = store.load("k1")
        expected = dict(fields, **{"a.b": b"\x00"})
        del expected["$.x"]
        assert loaded is not None and loaded.fields == expected

    def test_parallel_updates_of_different_fields_all_survive(
        self, store: Store, clock: FakeClock
    ) -> None:
        store.create("k1", make_record(clock))
        threads, per_thread = 8, 25
        barrier = threading.Barrier(threads)
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                barrier.wait()
                for i in range(per_thread):
                    assert store.update("k1", Patch(set={f"t{n}-{i}": str(i).encode()}))
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

        pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        assert errors == []
        loaded = store.load("k1")
        assert loaded is not None and len(loaded.fields) == threads * per_thread

    # -- session locks (satchel.store.Lockable) ----------------------------------------

    def test_is_lockable(self, store: Store) -> None:
        assert isinstance(store, Lockable)

    def test_a_lock_is_held_by_one_token_until_it_releases(self, store: Lockable) -> None:
        key = lock_key("k1")
        assert store.acquire_lock(key, "first", 30)
        assert not store.acquire_lock(key, "second", 30)
        assert not store.acquire_lock(key, "first", 30)  # locks do not nest
        assert not store.release_lock(key, "second")  # not its lock: it stays held
        assert not store.acquire_lock(key, "third", 30)
        assert store.release_lock(key, "first")
        assert not store.release_lock(key, "first")  # already free
        assert store.acquire_lock(key, "third", 30)

    def test_locks_are_per_key_and_apart_from_records(
        self, store: Store, clock: FakeClock
    ) -> None:
        assert isinstance(store, Lockable)
        store.create("k1", make_record(clock, a=b"1"))
        assert store.acquire_lock(lock_key("k1"), "t", 30)
        assert store.acquire_lock(lock_key("k2"), "t", 30)
        assert store.acquire_lock("k1", "t", 30)  # a lock key never names a record
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {"a": b"1"}
        assert store.update("k1", Patch(set={"b": b"2"})) == Updated.KEPT
        store.delete("k1")
        assert store.load("k1") is None
        assert not store.acquire_lock("k1", "u", 30)  # deleting the record kept the lock
        assert store.load(lock_key("k2")) is None

    def test_a_lock_past_its_lease_is_free_and_its_old_holder_cannot_free_it(
        self, store: Lockable, clock: FakeClock
    ) -> None:
        key = lock_key("k1")
        assert store.acquire_lock(key, "crashed", 0.2)
        clock.advance(1)  # stores on the store's clock; Redis ends the lease by its own (PX)
        deadline = time.monotonic() + 10
        while not store.acquire_lock(key, "next", 30):
            assert time.monotonic() < deadline, "a lock past its lease was never freed"
            time.sleep(0.02)
        assert not store.release_lock(key, "crashed")
        assert not store.acquire_lock(key, "third", 30)
        assert store.release_lock(key, "next")

    def test_parallel_acquires_of_one_lock_give_it_to_one(self, store: Lockable) -> None:
        threads = 8
        barrier = threading.Barrier(threads)
        won: list[str] = []
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                barrier.wait()
                if store.acquire_lock(lock_key("k1"), f"t{n}", 30):
                    won.append(f"t{n}")
            except BaseException as err:  # pragma: no cover - reported below
                errors.append(err)

        pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        assert errors == []
        assert len(won) == 1

    def test_purge_expired_in_batches(self, store: Store, clock: FakeClock) -> None:
        if not isinstance(store, Purgeable):
            pytest.skip(f"{type(store).__name__} expires records natively")
        for i in range(7):
            store.create(f"old{i}", make_record(clock, ttl=10, a=b"1"))
        store.create("live", make_record(clock, ttl=HOUR, a=b"1"))
        clock.advance(11)
        assert store.count_expired() == 7
        assert store.purge_expired(batch=3) == 3
        assert store.purge_expired(batch=3) == 3
        assert store.purge_expired(batch=3) == 1
        assert store.purge_expired(batch=3) == 0
        assert store.count_expired() == 0
        assert store.load("live") is not None


class PrefetchContract:
    """What a store that can prefetch promises (``satchel.store.Prefetching``), as the
    engine uses it: ``prefetch`` gives None (then ``load`` is called) or a pending load
    that answers as ``load`` would, and a pending load cancelled or dropped leaves the
    store in step. Mixed into a ``StoreContract`` subclass."""

    @staticmethod
    def fetched(store: Prefetching, key: str) -> Record | None:
        pending = store.prefetch(key)
        return store.load(key) if pending is None else pending.result()  # type: ignore[attr-defined]

    def test_prefetch_answers_as_load_does(self, store: Prefetching, clock: FakeClock) -> None:
        record = Record({"a": b"1", "b": b'{"x":[1,2]}', "raw": b"\xff\x00"}, clock.now - 5,
                        clock.now - 1, clock.now + 100, permanent=True, user="alice")
        store.create("k1", record)  # type: ignore[attr-defined]
        assert self.fetched(store, "k1") == record
        assert self.fetched(store, "nope") is None
        clock.advance(101)
        assert self.fetched(store, "k1") is None

    def test_prefetches_in_flight_together_get_their_own_answers(
            self, store: Prefetching, clock: FakeClock) -> None:
        for name in ("k1", "k2"):
            store.create(name, make_record(clock, who=name.encode()))  # type: ignore[attr-defined]
        first, second = store.prefetch("k1"), store.prefetch("k2")
        if second is not None:
            loaded = second.result()
            assert loaded is not None and loaded.fields == {"who": b"k2"}
        if first is not None:
            loaded = first.result()
            assert loaded is not None and loaded.fields == {"who": b"k1"}

    @pytest.mark.parametrize("end", ["cancel", "drop"])
    def test_a_prefetch_never_read_leaves_the_store_in_step(
            self, store: Prefetching, clock: FakeClock, end: str) -> None:
        store.create("k1", make_record(clock, n=b"0"))  # type: ignore[attr-defined]
        for n in range(1, 12):  # more rounds than a pool keeps connections
            pending = store.prefetch("k1")
            if pending is not None and end == "cancel":
                pending.cancel()
                pending.cancel()  # a second cancel is harmless
            del pending
            gc.collect()
            assert store.update("k1", Patch(set={"n": str(n).encode()}))  # type: ignore[attr-defined]
            loaded = self.fetched(store, "k1")
            assert loaded is not None and loaded.fields == {"n": str(n).encode()}
