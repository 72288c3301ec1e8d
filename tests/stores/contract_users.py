"""The store contract for "who is logged in where": :class:`~satchel.store.UserIndex`,
:class:`~satchel.store.Inventory` and :attr:`~satchel.store.Record.device`.

Mixed into ``StoreContract``, so every server-side store runs it on its real server.
"""

from __future__ import annotations

from typing import Any

from satchel.store import (
    DEVICE_MAX,
    Inventory,
    Patch,
    Record,
    SessionInfo,
    StoreStats,
    Updated,
    UserIndex,
)
from tests.clock import FakeClock

HOUR = 3600.0
# A user name with what a key layout might trip on: braces (a Redis hash tag), quotes, spaces.
AWKWARD = "o'brien {x} ✓"


def login(store: Any, clock: FakeClock, key: str, user: str | None, *, age: float = 0.0,
          ttl: float = HOUR, device: str | None = None, permanent: bool = False) -> SessionInfo:
    """Create a session of ``user`` made ``age`` seconds ago; return what listing it shows."""
    record = Record({"n": key.encode()}, clock.now - age, clock.now - age / 2,
                    clock.now + ttl, permanent, user, device)
    store.create(key, record)
    return SessionInfo(key, record.created_at, record.last_seen, record.expires_at, user,
                       device, permanent)


def keys(infos: list[SessionInfo]) -> list[str]:
    return [info.key for info in infos]


class UserIndexContract:
    def test_is_a_user_index_and_an_inventory(self, store: Any) -> None:
        assert isinstance(store, UserIndex)
        assert isinstance(store, Inventory)

    def test_device_round_trips_and_is_cut(self, store: Any, clock: FakeClock) -> None:
        record = Record({"a": b"1"}, clock.now, clock.now, clock.now + HOUR, user="alice",
                        device="Firefox 128 on Linux, 203.0.113.9")
        store.create("k1", record)
        assert store.load("k1") == record
        long = "é" + "x" * DEVICE_MAX  # characters, not bytes, are counted
        store.create("k2", Record({}, clock.now, clock.now, clock.now + HOUR, device=long))
        loaded = store.load("k2")
        assert loaded is not None and loaded.device == long[:DEVICE_MAX]
        assert store.update("k1", Patch(set={"b": b"2"}, user="bob", last_seen=clock.now + 1,
                                        expires_at=clock.now + 2 * HOUR))
        loaded = store.load("k1")
        assert loaded is not None and loaded.device == record.device  # an update keeps it
        store.create("k3", Record({}, clock.now, clock.now, clock.now + HOUR))
        loaded = store.load("k3")
        assert loaded is not None and loaded.device is None

    def test_sessions_of_lists_the_users_live_sessions_oldest_first(
            self, store: Any, clock: FakeClock) -> None:
        second = login(store, clock, "k2", "alice", age=20, device="phone", permanent=True)
        first = login(store, clock, "k1", "alice", age=30, ttl=2 * HOUR, device="laptop")
        third = login(store, clock, "k3", "alice", age=10)
        bob = login(store, clock, "b1", "bob", age=40)
        login(store, clock, "a1", None)
        odd = login(store, clock, "o1", AWKWARD)
        assert store.sessions_of("alice") == [first, second, third]
        assert store.sessions_of("bob") == [bob]
        assert store.sessions_of(AWKWARD) == [odd]
        assert store.sessions_of("nobody") == []
        assert store.sessions_of("") == []
        assert store.sessions_of("Alice") == []  # users compare as they are

    def test_sessions_of_never_lists_an_expired_or_ended_session(
            self, store: Any, clock: FakeClock) -> None:
        login(store, clock, "short", "alice", age=9, ttl=10)
        login(store, clock, "live", "alice", age=5)
        login(store, clock, "deleted", "alice")
        login(store, clock, "emptied", "alice")
        store.delete("deleted")
        assert store.update("emptied", Patch(clear=True, delete_if_empty=True)) == Updated.EMPTIED
        assert keys(store.sessions_of("alice")) == ["short", "live"]
        clock.advance(10)
        assert keys(store.sessions_of("alice")) == ["live"]
        assert keys(store.sessions_of("alice")) == ["live"]  # listing again: the same

    def test_a_session_extended_by_an_update_stays_listed(
            self, store: Any, clock: FakeClock) -> None:
        login(store, clock, "k1", "alice", ttl=100)
        for _ in range(5):
            clock.advance(90)
            assert store.update("k1", Patch(last_seen=clock.now, expires_at=clock.now + 100))
        [info] = store.sessions_of("alice")
        assert (info.key, info.last_seen, info.expires_at) == ("k1", clock.now, clock.now + 100)
        assert store.update("k1", Patch(expires_at=clock.now + 100 * HOUR, permanent=True))
        clock.advance(50 * HOUR)
        assert keys(store.sessions_of("alice")) == ["k1"]

    def test_a_session_whose_user_changes_moves_in_the_index(
            self, store: Any, clock: FakeClock) -> None:
        login(store, clock, "k1", "alice", age=2)
        login(store, clock, "k2", "alice", age=1)
        login(store, clock, "anon", None)
        assert store.update("k1", Patch(user="bob", set={"x": b"1"}))
        assert keys(store.sessions_of("alice")) == ["k2"]
        assert keys(store.sessions_of("bob")) == ["k1"]
        assert store.update("k2", Patch(user=""))  # logged out, the session kept
        assert store.sessions_of("alice") == []
        assert store.update("anon", Patch(user="carol", expires_at=clock.now + 2 * HOUR))
        [carol] = store.sessions_of("carol")
        assert (carol.key, carol.user, carol.expires_at) == ("anon", "carol", clock.now + 2 * HOUR)
        assert store.update("k1", Patch(user="alice"))  # and back
        assert keys(store.sessions_of("alice")) == ["k1"]
        assert store.sessions_of("bob") == []
        assert store.update("k1", Patch(user="alice"))  # unchanged: still listed once
        assert keys(store.sessions_of("alice")) == ["k1"]

    def test_a_key_created_again_after_expiry_belongs_to_its_new_user(
            self, store: Any, clock: FakeClock) -> None:
        login(store, clock, "k1", "alice", ttl=10)
        clock.advance(11)
        login(store, clock, "k1", "bob")
        assert store.sessions_of("alice") == []
        assert keys(store.sessions_of("bob")) == ["k1"]

    def test_delete_user_ends_every_live_session_but_the_kept_one(
            self, store: Any, clock: FakeClock) -> None:
        for n, key in enumerate(("k1", "k2", "k3")):
            login(store, clock, key, "alice", age=10 - n)
        login(store, clock, "old", "alice", ttl=5)
        login(store, clock, "b1", "bob")
        login(store, clock, "anon", None)
        clock.advance(6)
        assert sorted(store.delete_user("alice", keep="k2")) == ["k1", "k3"]
        assert store.load("k1") is None and store.load("k3") is None
        assert store.load("k2") is not None and store.load("b1") is not None
        assert store.load("anon") is not None
        assert keys(store.sessions_of("alice")) == ["k2"]
        assert store.update("k1", Patch(set={"cart": b"[]"})) == Updated.GONE
        assert store.delete_user("alice", keep="b1") == ["k2"]  # bob's key spares nothing
        assert store.sessions_of("alice") == []
        assert store.delete_user("alice") == []
        assert store.delete_user("nobody") == []
        assert keys(store.sessions_of("bob")) == ["b1"]

    def test_delete_user_spares_a_session_moved_to_another_user(
            self, store: Any, clock: FakeClock) -> None:
        login(store, clock, "k1", "alice")
        login(store, clock, "k2", "alice")
        assert store.update("k1", Patch(user="bob"))
        assert store.delete_user("alice") == ["k2"]
        assert store.load("k1") is not None
        assert keys(store.sessions_of("bob")) == ["k1"]

    def test_stats_and_all_sessions(self, store: Any, clock: FakeClock) -> None:
        assert store.stats() == StoreStats(0, 0)
        assert list(store.all_sessions()) == []
        made = [login(store, clock, "a1", "alice", device="laptop"),
                login(store, clock, "a2", "alice", age=3, permanent=True),
                login(store, clock, "b1", "bob"),
                login(store, clock, "n1", None, device="curl")]
        login(store, clock, "gone", "carol", ttl=10)
        login(store, clock, "deleted", "dave")
        store.delete("deleted")
        clock.advance(10)
        assert store.stats() == StoreStats(sessions=4, users=2)
        assert sorted(store.all_sessions()) == sorted(made)

    def test_the_engines_bookkeeping_is_neither_counted_nor_listed(
            self, store: Any, clock: FakeClock) -> None:
        """A tombstone (what a rotation leaves for requests in flight) is a record, not a
        session: an admin's count and listing leave it out."""
        from satchel import tombstone

        made = login(store, clock, "s1", "alice")
        store.create(tombstone.key("s0"), tombstone.record("rotated", clock.now, 60.0,
                                                          successor="s1"))
        assert store.load(tombstone.key("s0")) is not None
        assert store.stats() == StoreStats(sessions=1, users=1)
        assert list(store.all_sessions()) == [made]
