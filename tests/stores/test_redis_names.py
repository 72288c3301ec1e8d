"""RedisStore's key names (:mod:`satchel.stores.redis.names`) against a real Redis: stores
whose prefixes nest (one app's prefix starts with another's, in one database) never see each
other's sessions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest

from tests.services import drop_keys, random_prefix
from tests.services import redis_client as shared_redis_client

redis = pytest.importorskip("redis")

from satchel.store import Record  # noqa: E402
from satchel.stores.redis import RedisStore  # noqa: E402
from tests.clock import FakeClock  # noqa: E402

KEY = hashlib.sha256(b"a session of the other app").hexdigest()


@pytest.fixture(scope="module")
def client() -> Iterator[redis.Redis]:
    with shared_redis_client() as client:
        yield client


@pytest.mark.parametrize("suffix", ["~staging:", "~", "staging:", "user:", "lock:"])
def test_a_store_never_lists_or_deletes_the_sessions_of_a_prefix_that_extends_its_own(
        client: redis.Redis, suffix: str) -> None:
    """App A (prefix P) and app B (prefix P + suffix) share a database: A's listing of every
    session must not show B's session (under a storage key that is not B's), and A's revoke
    of what it lists must not end B's session."""
    clock = FakeClock()
    prefix = random_prefix()
    a = RedisStore(client, prefix=prefix, clock=clock)
    b = RedisStore(client, prefix=prefix + suffix, clock=clock)
    try:
        b.create(KEY, Record({"a": b"1"}, clock.now, clock.now, clock.now + 3600,
                             user="alice", device="Firefox"))
        listed = list(a.all_sessions())
        for info in listed:  # an admin revoking what app A lists
            a.delete(info.key)
        assert listed == []
        assert a.stats().sessions == 0
        assert b.load(KEY) is not None, "app A ended app B's session"
    finally:
        drop_keys(client, prefix)


def test_a_listing_with_legacy_names_off_keeps_an_earlier_session_revocable(
        client: redis.Redis) -> None:
    from tests.stores.redis_legacy import OLD, plant, twin

    clock = FakeClock()
    prefix = random_prefix()
    store = RedisStore(client, prefix=prefix, clock=clock)
    try:
        plant(store, clock, OLD)  # alice's session, under its earlier name
        with twin(store, legacy_key_names=False) as strict:
            # e.g. `flask satchel list --user alice`: listed, and so not dropped from the index
            assert [info.key for info in strict.sessions_of("alice")] == [OLD]
        assert store.load(OLD) is not None  # still served where the earlier name is looked at
        assert [info.key for info in store.sessions_of("alice")] == [OLD]
        assert store.delete_user("alice") == [OLD]
        assert store.load(OLD) is None
    finally:
        store.close()
        drop_keys(client, prefix)
