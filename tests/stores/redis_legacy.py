"""Sessions under RedisStore's earlier key names (``prefix{<hex>}``), beside sessions under the
current ones (``prefix`` + base64url of the storage key's 32 bytes): see
:mod:`satchel.stores.redis.names`.

A session "from before the upgrade" is planted by creating it, then moving its bytes (and
TTL) from the current name to the earlier one with a raw client, as an earlier build would
have left it. Each test then checks that every store operation finds it there, that it is
never moved to the current name, that a revoke leaves it under neither name, and, with
``legacy_key_names=False``, that requests no longer find it, while listings and revokes still
do.

Mixed into the RedisStore test classes of a single server and of a cluster, which provide
the ``store`` and ``clock`` fixtures. Not collected on its own.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from satchel.store import Patch, Record, Updated
from satchel.stores.redis import RedisStore
from tests.clock import FakeClock
from tests.stores.contract_users import keys

HOUR = 3600.0
# Storage keys as the engine makes them (SHA-256 of a session id, 64 hex digits).
OLD = hashlib.sha256(b"a session from before the upgrade").hexdigest()
NEW = hashlib.sha256(b"a session from after the upgrade").hexdigest()
THIRD = hashlib.sha256(b"a third session").hexdigest()


def current_name(store: RedisStore, key: str) -> bytes:
    """The name the store must create ``key`` under: 51 bytes with "satchel:"."""
    digest = base64.urlsafe_b64encode(bytes.fromhex(key)).rstrip(b"=")
    return store.prefix.encode() + digest


def earlier_name(store: RedisStore, key: str) -> bytes:
    return store.prefix.encode() + b"{" + key.encode() + b"}"


def plant(store: RedisStore, clock: FakeClock, key: str, user: str | None = "alice",
          **fields: bytes) -> Record:
    """Create session ``key`` (of ``user``, in the user's set), then move it to its earlier
    name with its TTL, as a build from before the current names left it."""
    record = Record(dict(fields) or {"a": b"1"}, clock.now, clock.now, clock.now + HOUR,
                    user=user, device="Firefox (192.0.2.1)")
    store.create(key, record)
    client: Any = store.client
    new, old = current_name(store, key), earlier_name(store, key)
    data, ttl = client.get(new), client.pttl(new)
    assert data is not None and ttl > 0, "the store did not create the session at its name"
    client.set(old, data, px=ttl)
    client.delete(new)
    return record


def where(store: RedisStore, key: str) -> tuple[bool, bool]:
    """Whether ``key``'s current name, and its earlier name, exist."""
    client: Any = store.client
    return (client.exists(current_name(store, key)) == 1,
            client.exists(earlier_name(store, key)) == 1)


@contextmanager
def twin(store: RedisStore, **options: Any) -> Iterator[RedisStore]:
    """Another store on ``store``'s client, prefix and clock, with ``options``."""
    other = RedisStore(store.client, prefix=store.prefix, clock=store._clock,
                       keep_connections=store.keeps_connections, **options)
    try:
        yield other
    finally:
        other.close()


class RedisLegacyNamesContract:
    def test_new_sessions_are_named_by_the_base64url_of_their_key(
            self, store: RedisStore, clock: FakeClock) -> None:
        store.create(NEW, Record({"a": b"1"}, clock.now, clock.now, clock.now + HOUR,
                                 user="alice"))
        name = current_name(store, NEW)
        assert len(name) == len(store.prefix) + 43 and b"{" not in name
        assert where(store, NEW) == (True, False)
        client: Any = store.client
        assert set(client.scan_iter(match=store.prefix + "*")) == {name, store._users("alice")}
        assert client.zrange(store._users("alice"), 0, -1) == [NEW.encode()]  # members: hex
        assert store.update(NEW, Patch(set={"b": b"2"}, user="bob"))
        assert where(store, NEW) == (True, False)

    def test_a_session_under_its_earlier_name_is_read_and_written_there(
            self, store: RedisStore, clock: FakeClock) -> None:
        record = plant(store, clock, OLD)
        assert store.load(OLD) == record
        pending = store.prefetch(OLD)
        assert pending is None or pending.result() == record
        assert store.update(OLD, Patch(set={"b": b"2"}, delete=frozenset({"a"}))) == Updated.KEPT
        clock.advance(600)  # a touch: the TTL slides, where the session is
        assert store.update(OLD, Patch(last_seen=clock.now, expires_at=clock.now + HOUR))
        loaded = store.load(OLD)
        assert loaded is not None and loaded.fields == {"b": b"2"}
        assert (loaded.last_seen, loaded.expires_at) == (clock.now, clock.now + HOUR)
        client: Any = store.client
        assert client.pttl(earlier_name(store, OLD)) > (HOUR - 1) * 1000
        assert where(store, OLD) == (False, True)  # never moved
        assert store.update(OLD, Patch(set={"c": b"3"}, clear=True, delete_if_empty=True))
        assert where(store, OLD) == (False, True)
        assert store.update(OLD, Patch(delete=frozenset({"c"}), delete_if_empty=True)) == (
            Updated.EMPTIED)
        assert where(store, OLD) == (False, False)
        assert store.load(OLD) is None

    def test_sessions_under_both_names_are_listed_by_their_storage_keys(
            self, store: RedisStore, clock: FakeClock) -> None:
        plant(store, clock, OLD)
        store.create(NEW, Record({"a": b"1"}, clock.now + 1, clock.now + 1, clock.now + HOUR,
                                 user="alice"))
        store.create("k1", Record({"a": b"1"}, clock.now + 2, clock.now + 2, clock.now + HOUR))
        assert keys(store.sessions_of("alice")) == [OLD, NEW]
        assert sorted(info.key for info in store.all_sessions()) == sorted([OLD, NEW, "k1"])
        assert store.stats().sessions == 3 and store.stats().users == 1
        assert store.update(OLD, Patch(user="bob"))  # moved to another user's set
        assert keys(store.sessions_of("bob")) == [OLD]
        assert keys(store.sessions_of("alice")) == [NEW]
        assert where(store, OLD) == (False, True)

    def test_a_revoke_leaves_it_under_neither_name(
            self, store: RedisStore, clock: FakeClock) -> None:
        plant(store, clock, OLD)
        store.delete(OLD)
        assert where(store, OLD) == (False, False)
        assert store.load(OLD) is None
        assert store.update(OLD, Patch(set={"a": b"2"})) == Updated.GONE
        assert where(store, OLD) == (False, False)  # not brought back under either name

    def test_a_delete_removes_a_key_under_both_names(
            self, store: RedisStore, clock: FakeClock) -> None:
        plant(store, clock, OLD)
        store.client.set(current_name(store, OLD), store.client.get(earlier_name(store, OLD)),
                         px=60_000)
        store.delete(OLD)
        assert where(store, OLD) == (False, False)

    def test_logging_out_other_devices_ends_sessions_under_both_names(
            self, store: RedisStore, clock: FakeClock) -> None:
        plant(store, clock, OLD)
        plant(store, clock, THIRD)
        store.create(NEW, Record({"a": b"1"}, clock.now, clock.now, clock.now + HOUR,
                                 user="alice"))
        assert sorted(store.delete_user("alice", keep=THIRD)) == sorted([OLD, NEW])
        assert where(store, OLD) == where(store, NEW) == (False, False)
        assert where(store, THIRD) == (False, True)
        assert keys(store.sessions_of("alice")) == [THIRD]
        assert store.delete_user("alice") == [THIRD]
        assert where(store, THIRD) == (False, False)

    def test_a_login_finds_the_session_under_its_earlier_name(
            self, store: RedisStore, clock: FakeClock) -> None:
        plant(store, clock, OLD, user=None)
        assert store.update(OLD, Patch(user="carol", set={"u": b"1"}))  # a login, no expiry
        assert keys(store.sessions_of("carol")) == [OLD]
        loaded = store.load(OLD)
        assert loaded is not None and loaded.user == "carol"
        assert where(store, OLD) == (False, True)

    def test_a_create_is_refused_while_the_key_lives_under_its_earlier_name(
            self, store: RedisStore, clock: FakeClock) -> None:
        if store._cluster:
            pytest.skip("a cluster cannot look at the earlier name in the create's script")
        plant(store, clock, OLD)
        with pytest.raises(KeyError):
            store.create(OLD, Record({"b": b"2"}, clock.now, clock.now, clock.now + HOUR))
        assert where(store, OLD) == (False, True)

    def test_with_legacy_key_names_off_requests_no_longer_look_at_the_earlier_name(
            self, store: RedisStore, clock: FakeClock) -> None:
        plant(store, clock, OLD)
        with twin(store, legacy_key_names=False) as strict:
            assert strict.load(OLD) is None
            pending = strict.prefetch(OLD)
            assert pending is None or pending.result() is None
            assert strict.update(OLD, Patch(set={"b": b"2"})) == Updated.GONE
        assert where(store, OLD) == (False, True)  # left to expire, unchanged
        loaded = store.load(OLD)  # still there for a store that looks
        assert loaded is not None and loaded.fields == {"a": b"1"}

    def test_with_legacy_key_names_off_listings_and_revokes_still_see_the_earlier_name(
            self, store: RedisStore, clock: FakeClock) -> None:
        """Processes that still look there (a mixed deployment) serve such a session, so
        no process may lose it from a listing or leave it alive after a revoke."""
        plant(store, clock, OLD)
        with twin(store, legacy_key_names=False) as strict:
            assert [info.key for info in strict.sessions_of("alice")] == [OLD]
            assert [info.key for info in strict.all_sessions()] == [OLD]
            assert strict.stats().sessions == 1
            assert strict.delete_user("alice") == [OLD]  # "log out everywhere"
            assert where(store, OLD) == (False, False)
            plant(store, clock, OLD)
            strict.delete(OLD)  # a revoke of what a listing showed
            assert where(store, OLD) == (False, False)
        assert store.load(OLD) is None and store.sessions_of("alice") == []
