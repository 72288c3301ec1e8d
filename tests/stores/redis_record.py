"""RedisStore's record versions on a server: a version-1 record (8-byte doubles) planted raw
is read by load and listings, and updated, touched and moved to another user by the Lua
scripts, which write it back as version 2; the scripts' version 2 is byte for byte Python's,
whatever the clock (zero, stepped back, below zero, sub-millisecond, past the range).

Mixed into the RedisStore test classes of a single server and of a cluster, which provide
the ``store`` and ``clock`` fixtures. Not collected on its own.
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from satchel.store import Patch, Record, Updated
from satchel.stores.redis import RedisStore
from satchel.stores.redis.millis import LIMIT
from satchel.stores.redis.record import Head, encode
from tests.clock import FakeClock
from tests.stores.record_v1 import encode_v1
from tests.stores.redis_users import settle

HOUR = 3600.0
KEY = "c" * 64


def plant_v1(store: RedisStore, record: Record, ulive: float | None = None) -> bytes:
    """Store ``record`` at KEY as version 1 wrote it, with its TTL; returns the name."""
    name = store._names.of(KEY)
    ttl = max(1, math.ceil((min(record.expires_at, ulive or math.inf) - store._clock()) * 1000))
    store.client.set(name, encode_v1(record, ulive), px=ttl)
    return name


class RedisRecordVersionsContract:
    def test_a_version_1_record_is_read_updated_and_rewritten_as_version_2(
            self, store: RedisStore, clock: FakeClock) -> None:
        now = clock.now
        record = Record({"a": b"1", "big": b"[" + b"1," * 60 + b"1]"}, now - 100.0000004,
                        now - 10.25, now + HOUR + 0.3, permanent=True, user=None,
                        device="phone")
        name = plant_v1(store, record)
        assert store.load(KEY) == record  # doubles: exactly as written
        assert store.client.get(name)[0] == 1  # a load never rewrites
        assert store.update(KEY, Patch(set={"b": b"2"}, delete=frozenset({"a"}))) is Updated.KEPT
        data = store.client.get(name)
        assert data[0] >> 4 == 2 and len(data) == len(encode_v1(record)) - 12
        loaded = store.load(KEY)
        assert loaded == dataclasses.replace(
            record, fields={"big": record.fields["big"], "b": b"2"},
            created_at=now - 100.0, last_seen=now - 10.25, expires_at=now + HOUR + 0.3)
        assert 0 < store.client.pttl(name) <= (HOUR + 0.3) * 1000

    def test_a_version_1_record_is_touched_and_moved_to_a_user(
            self, store: RedisStore, clock: FakeClock) -> None:
        now = clock.now
        record = Record({"a": b"1"}, now, now, now + HOUR, user="alice", device="laptop")
        name = plant_v1(store, record, ulive=now + 2 * HOUR)
        assert store.load(KEY) == record
        clock.advance(60)
        assert store.update(KEY, Patch(last_seen=clock.now, expires_at=clock.now + HOUR))
        assert store.client.get(name)[0] == 0x20 | 2 | 4 | 8
        assert store.load(KEY) == dataclasses.replace(record, last_seen=clock.now,
                                                     expires_at=clock.now + HOUR)
        assert store.update(KEY, Patch(user="bob", last_seen=clock.now + 0.5,
                                       expires_at=clock.now + 0.5 + HOUR))
        moved = store.load(KEY)
        assert moved is not None and moved.user == "bob"
        assert moved.expires_at == clock.now + 0.5 + HOUR
        settle(store, clock)
        assert [info.key for info in store.sessions_of("bob")] == [KEY]
        assert store.sessions_of("alice") == []
        assert Head(store.client.get(name)).ulive is not None

    def test_a_version_1_record_is_listed(self, store: RedisStore, clock: FakeClock) -> None:
        now = clock.now
        record = Record({"a": b"1"}, now - 0.0001234, now - 0.000042, now + HOUR + 1e-6,
                        user="alice", device="d")
        plant_v1(store, record, ulive=now + 2 * HOUR)
        store.client.zadd(store._users("alice"), {KEY: now})
        settle(store, clock)
        [info] = store.sessions_of("alice")  # Lua's LIST on a single server, GETs on a cluster
        assert (info.created_at, info.last_seen, info.expires_at) == (
            record.created_at, record.last_seen, record.expires_at)

    @pytest.mark.parametrize(("start", "created", "seen", "expires"), [
        (1_800_000_000.0, 0.0, 0.0, HOUR),                 # a time of 0
        (0.0, 0.0, 0.0, HOUR),                             # a clock at zero
        (1_800_000_000.0, 5.0, -2.5, HOUR),                # the clock stepped back
        (-50.0, -100.0, -60.0, 49.0),                      # a clock below zero
        (1_800_000_000.0, 0.0004, 0.0006, HOUR + 0.0001),  # sub-millisecond
        (1_800_000_000.0, 0.0, 0.0, math.inf),             # past the range: kept at it
    ])
    def test_the_scripts_write_what_python_writes(
            self, store: RedisStore, clock: FakeClock, start: float, created: float,
            seen: float, expires: float) -> None:
        clock.now = start
        record = Record({"a": b"1"}, start + created, start + seen, start + expires,
                        device="d")
        name = store._names.of(KEY)
        store.create(KEY, record)
        python = store.client.get(name)
        assert store.update(KEY, Patch(set={"a": b"1"})) is Updated.KEPT  # a Lua rewrite
        assert store.client.get(name) == python
        # Read back as whole milliseconds: created and seen the nearest, expires up.
        loaded = store.load(KEY)
        assert loaded is not None
        assert abs(loaded.created_at - record.created_at) <= 0.0005
        assert abs(loaded.last_seen - record.last_seen) <= 0.0005
        assert (loaded.expires_at >= min(record.expires_at, LIMIT / 1000)
                and loaded.expires_at - record.expires_at < 0.001)
        # A touch through the script rounds as Python does.
        assert store.update(KEY, Patch(last_seen=clock.now - 0.0004,
                                       expires_at=clock.now + 10.0001))
        touched = store.load(KEY)
        assert touched is not None
        assert touched.last_seen == round((clock.now - 0.0004) * 1000) / 1000
        assert touched.expires_at == math.ceil((clock.now + 10.0001) * 1000) / 1000
        assert store.client.get(name) == encode(touched, None, b"d")

    def test_a_time_out_of_range_writes_nothing(
            self, store: RedisStore, clock: FakeClock) -> None:
        with pytest.raises(ValueError, match="out of range"):
            store.create(KEY, Record({}, math.nan, clock.now, clock.now + HOUR, user="alice"))
        assert store.load(KEY) is None
        store.create(KEY, Record({"a": b"1"}, clock.now, clock.now, clock.now + HOUR))
        with pytest.raises(ValueError, match="out of range"):
            store.update(KEY, Patch(last_seen=math.inf, expires_at=clock.now + HOUR,
                                    user="alice", set={"a": b"2"}))
        loaded = store.load(KEY)
        assert loaded is not None and loaded.fields == {"a": b"1"} and loaded.user is None
        assert store.client.exists(store._users("alice")) == 0

    def test_a_browser_device_is_kept_packed_and_read_back_exactly_everywhere(
            self, store: RedisStore, clock: FakeClock) -> None:
        device = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like"
                  " Gecko) Chrome/142.0.0.0 Safari/537.36 (2001:db8::7)")
        record = Record({"a": b"1"}, clock.now, clock.now, clock.now + HOUR, user="alice",
                        device=device)
        store.create(KEY, record)
        data = store.client.get(store._names.of(KEY))
        assert len(data) <= len(encode(record, None, device.encode())) - 90  # 127 B of text
        assert store.load(KEY) == record
        # Touched and moved to another user by the scripts: the device's bytes move as they are.
        assert store.update(KEY, Patch(last_seen=clock.now + 1, expires_at=clock.now + HOUR,
                                       user="bob", set={"b": b"2"})) is Updated.KEPT
        loaded = store.load(KEY)
        assert loaded is not None and loaded.device == device and loaded.user == "bob"
        assert [info.device for info in store.sessions_of("bob")] == [device]
        assert [info.device for info in store.all_sessions()] == [device]
