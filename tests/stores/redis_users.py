"""What RedisStore's per-user sets promise beyond the store contract (see
:mod:`satchel.stores.redis.users`): a set's TTL is never below a member's and never
forever, stale members are removed when listed, sessions from before the sets get
indexed, and a session never outlives its set even when raising the set's TTL fails.

Mixed into the RedisStore test classes of a single server and of a cluster, which
provide the ``store`` and ``clock`` fixtures. Not collected on its own.
"""

from __future__ import annotations

from typing import Any

import pytest

from satchel.errors import StoreUnavailable
from satchel.store import Patch, Record
from satchel.stores.redis import RedisStore
from satchel.stores.redis.users import GRACE
from tests.clock import FakeClock
from tests.stores.contract_users import keys, login

HOUR = 3600.0


def pttl(store: RedisStore, name: bytes | str) -> int:
    return int(store.client.pttl(name))


def session_name(store: RedisStore, key: str) -> bytes:
    """The name the store creates session ``key`` under."""
    return store._names.of(key)


def legacy_name(store: RedisStore, key: str) -> str:
    """The name earlier builds of the store gave session ``key``: where it still lives."""
    return f"{store.prefix}{{{key}}}"


def write_earlier_layout(store: RedisStore, key: str, record: Record,
                         ulive: float | None = None) -> str:
    """Store ``record`` at ``key`` as satchel did before sessions were strings: a hash of
    f:<name> fields and m:* metadata, with a TTL until it expires (by the store's clock).
    Returns the key's name (the earlier name: such a session predates the current names)."""
    name = legacy_name(store, key)
    meta = {"m:created": repr(record.created_at), "m:seen": repr(record.last_seen),
            "m:expires": repr(record.expires_at), "m:perm": "1" if record.permanent else "0"}
    if record.user is not None:
        meta["m:user"] = record.user
    if record.device is not None:
        meta["m:device"] = record.device
    if ulive is not None:
        meta["m:ulive"] = repr(ulive)
    store.client.delete(name)
    store.client.hset(name, mapping={**meta, **{"f:" + k: v for k, v in record.fields.items()}})
    store.client.pexpire(name, max(1, int((record.expires_at - store._clock()) * 1000)))
    return name


def members(store: RedisStore, user: str) -> set[bytes]:
    return set(store.client.zrange(store._users(user), 0, -1))


def settle(store: RedisStore, clock: FakeClock) -> None:
    """On a cluster, let a listing remove stale members (it waits GRACE seconds)."""
    if store._cluster:
        clock.advance(GRACE + 1)


class RedisUserSetContract:
    def test_the_set_is_named_by_a_hash_of_the_user_in_one_slot(
            self, store: RedisStore, clock: FakeClock) -> None:
        login(store, clock, "k1", "alice {x}")
        name = store._users("alice {x}")
        assert b"alice" not in name and name.startswith(store.prefix.encode() + b"user:{")
        assert name.count(b"{") == 1 and name.endswith(b"}")
        assert members(store, "alice {x}") == {b"k1"}

    def test_the_sets_ttl_covers_its_longest_member_and_is_never_forever(
            self, store: RedisStore, clock: FakeClock) -> None:
        name = store._users("alice")
        login(store, clock, "k1", "alice", ttl=100)
        assert 100_000 <= pttl(store, name) <= 200_000  # twice the session's life, at most
        login(store, clock, "k2", "alice", ttl=10)
        assert pttl(store, name) > 100_000  # a shorter member never lowers it
        for _ in range(20):  # touches: the session slides, its set keeps ahead
            clock.advance(30)
            assert store.update("k1", Patch(last_seen=clock.now, expires_at=clock.now + 100))
            assert 0 < pttl(store, session_name(store, "k1")) <= pttl(store, name)
            assert pttl(store, session_name(store, "k1")) > 99_000  # its whole TTL
        assert store.update("k1", Patch(expires_at=clock.now + 30 * 24 * HOUR))
        assert pttl(store, session_name(store, "k1")) > 29 * 24 * 3600_000
        assert pttl(store, session_name(store, "k1")) <= pttl(store, name)
        store.delete("k1")
        store.delete("k2")
        assert pttl(store, name) > 0  # it ends by itself, emptied or not

    def test_a_user_change_covers_the_new_users_set(
            self, store: RedisStore, clock: FakeClock) -> None:
        login(store, clock, "k1", "alice", ttl=2 * HOUR)
        assert store.update("k1", Patch(user="bob"))
        assert pttl(store, session_name(store, "k1")) <= pttl(store, store._users("bob"))
        assert pttl(store, session_name(store, "k1")) > HOUR * 1000
        login(store, clock, "k2", None, ttl=HOUR)
        assert store.update("k2", Patch(user="carol", expires_at=clock.now + 5 * HOUR))
        assert 4 * HOUR * 1000 < pttl(store, session_name(store, "k2")) <= pttl(
            store, store._users("carol"))

    def test_a_session_never_outlives_its_set_if_raising_the_sets_ttl_fails(
            self, store: RedisStore, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
        login(store, clock, "k1", "alice", ttl=100)
        name = store._users("alice")

        def down(*args: Any) -> None:
            raise StoreUnavailable("down")

        monkeypatch.setattr(store, "_extend", down)
        clock.advance(50)
        with pytest.raises(StoreUnavailable):  # past what the set was raised to at create
            store.update("k1", Patch(last_seen=clock.now, expires_at=clock.now + 1000))
        assert 0 < pttl(store, session_name(store, "k1")) <= pttl(store, name)
        monkeypatch.undo()
        assert store.update("k1", Patch(last_seen=clock.now, expires_at=clock.now + 1000))
        assert pttl(store, session_name(store, "k1")) > 999_000  # its whole TTL again
        assert pttl(store, session_name(store, "k1")) <= pttl(store, name)

    def test_stale_members_are_removed_when_listed(
            self, store: RedisStore, clock: FakeClock) -> None:
        for key in ("live", "deleted", "moved", "expiring"):
            login(store, clock, key, "alice", ttl=GRACE + 2 * HOUR if key != "expiring" else 10)
        store.delete("deleted")
        assert store.update("moved", Patch(user="bob"))
        clock.advance(11)
        assert members(store, "alice") == {b"live", b"deleted", b"moved", b"expiring"}
        assert keys(store.sessions_of("alice")) == ["live"]  # never listed, whatever is left
        settle(store, clock)
        assert keys(store.sessions_of("alice")) == ["live"]
        assert members(store, "alice") == {b"live"}
        assert members(store, "bob") == {b"moved"}

    def test_delete_user_removes_its_members(self, store: RedisStore, clock: FakeClock) -> None:
        login(store, clock, "k1", "alice")
        login(store, clock, "k2", "alice")
        login(store, clock, "gone", "alice")
        store.delete("gone")
        settle(store, clock)
        assert sorted(store.delete_user("alice", keep="k2")) == ["k1"]
        assert members(store, "alice") == {b"k2"}

    def test_a_session_from_before_the_sets_is_indexed_by_its_next_update(
            self, store: RedisStore, clock: FakeClock) -> None:
        name = legacy_name(store, "old")  # as the store wrote it before: no m:ulive, no set
        store.client.hset(name, mapping={"m:created": repr(clock.now), "m:seen": repr(clock.now),
                                         "m:expires": repr(clock.now + HOUR), "m:perm": "0",
                                         "m:user": "alice", "f:a": "1"})
        store.client.pexpire(name, int(HOUR * 1000))
        assert store.sessions_of("alice") == []
        assert store.update("old", Patch(set={"b": b"2"}))
        assert keys(store.sessions_of("alice")) == ["old"]
        assert 0 < pttl(store, name) <= pttl(store, store._users("alice"))

    def test_sessions_of_the_earlier_layout_are_listed_and_deleted_beside_new_ones(
            self, store: RedisStore, clock: FakeClock) -> None:
        login(store, clock, "new", "alice")
        old = Record({"a": b"1"}, clock.now, clock.now, clock.now + HOUR, user="alice",
                     device="Safari (192.0.2.7)")
        write_earlier_layout(store, "old", old, ulive=clock.now + 2 * HOUR)
        store._add("alice", "old", clock.now, clock.now + 2 * HOUR)  # as its create did
        listed = store.sessions_of("alice")
        assert keys(listed) == ["new", "old"]
        assert listed[1].device == "Safari (192.0.2.7)" and listed[1].expires_at == old.expires_at
        assert sorted(info.key for info in store.all_sessions()) == ["new", "old"]
        assert store.stats().sessions == 2
        assert sorted(store.delete_user("alice", keep="new")) == ["old"]
        assert store.load("old") is None and store.load("new") is not None

    def test_a_member_whose_session_is_on_its_way_is_kept(
            self, store: RedisStore, clock: FakeClock) -> None:
        if not store._cluster:
            pytest.skip("a single server adds the member and writes the session in one script")
        store._add("alice", "k1", clock.now, clock.now + 2 * HOUR)  # a create's first step
        assert store.sessions_of("alice") == []
        assert store.delete_user("alice") == []
        assert members(store, "alice") == {b"k1"}  # kept: the session is on its way
        login(store, clock, "k1", "alice")
        assert keys(store.sessions_of("alice")) == ["k1"]
