"""What the RedisStore test modules share: the contract run over each way the store reaches a
server, and the helpers of the tests that make a server refuse.

A test module imports this after its own import guards; this module guards redis-py too.
Its name does not start with ``test_``, and ``RedisProtocolContract`` not with ``Test``, so
pytest collects neither on its own: each server's module subclasses the contract.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.services import cannot_test, drop_keys, random_prefix

try:
    import redis
except ImportError:
    cannot_test("the Redis store tests need redis-py: pip install -e '.[redis]'")

from satchel.errors import StoreUnavailable
from satchel.store import Patch, Record
from satchel.stores.redis import RedisStore
from satchel.stores.redis.record import decode
from tests.clock import FakeClock
from tests.stores.contract import HOUR, PrefetchContract, StoreContract, make_record
from tests.stores.redis_cluster import HOST, redis_server
from tests.stores.redis_legacy import RedisLegacyNamesContract
from tests.stores.redis_merge import RedisFastUpdateContract
from tests.stores.redis_record import RedisRecordVersionsContract
from tests.stores.redis_users import RedisUserSetContract, write_earlier_layout

# A storage key as the engine makes them: it must never show in an error message.
KEY = hashlib.sha256(b"a session id that must never be shown").hexdigest()
OTHER = hashlib.sha256(b"another session id").hexdigest()

# How the store reaches the server: over kept connections (RESP3 is redis-py 8's default;
# RESP2 replies arrive without redis-py's callbacks), or through client.execute_command.
STORE_PATHS = ["kept-resp3", "kept-resp2", "through-client"]


class RedisProtocolContract(StoreContract, PrefetchContract, RedisUserSetContract,
                            RedisLegacyNamesContract, RedisRecordVersionsContract,
                            RedisFastUpdateContract):
    """The store contract, and what RedisStore adds to it, on one server, by each of
    ``STORE_PATHS``. The subclass's module provides two fixtures:

    ``connect_to``
        ``protocol -> redis.Redis``: a new client of the server, speaking RESP ``protocol``
        (``None``: redis-py's default); the store fixture closes it after the test.
    ``admin``
        A client of the same server, used to drop the test's keys.
    """

    # The protocol of the client the "through-client" store sends its commands through.
    through_client_protocol: int | None = 2

    @pytest.fixture(params=STORE_PATHS)
    def store(self, request: pytest.FixtureRequest, clock: FakeClock,
              connect_to: Callable[[int | None], redis.Redis],
              admin: redis.Redis) -> Iterator[RedisStore]:
        protocols = {"kept-resp3": 3, "kept-resp2": 2,
                     "through-client": self.through_client_protocol}
        prefix = random_prefix()
        client = connect_to(protocols[request.param])
        store = RedisStore(client, prefix=prefix, clock=clock,
                           keep_connections=request.param != "through-client")
        try:
            yield store
        finally:
            store.close()
            client.close()
            drop_keys(admin, prefix)

    def test_key_layout_and_ttl(self, store: RedisStore, clock: FakeClock) -> None:
        name = f"{store.prefix}}}k1"  # not a storage key the engine makes: see test_legacy
        store.create("k1", make_record(clock, ttl=100, a=b"1"))
        assert 0 < store.client.pttl(name) <= 100_000
        assert store.client.type(name) == b"string"
        stored = decode(store.client.get(name), clock.now)
        assert isinstance(stored, Record) and stored.fields == {"a": b"1"}
        assert stored.expires_at == clock.now + 100
        clock.advance(60)
        assert store.update("k1", Patch(expires_at=clock.now + 10))
        assert 0 < store.client.pttl(name) <= 10_000
        assert store.update("k1", Patch(set={"b": b"2"}))  # no expires_at: the TTL stays
        assert 0 < store.client.pttl(name) <= 10_000

    def test_scripts_are_loaded_again_after_a_flush(
        self, store: RedisStore, clock: FakeClock
    ) -> None:
        store.client.script_flush()  # EVALSHA now answers NOSCRIPT, as on a new server
        store.create("k1", make_record(clock, a=b"1"))
        store.client.script_flush()
        assert store.update("k1", Patch(set={"b": b"2"}, expires_at=clock.now + HOUR))
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {"a": b"1", "b": b"2"}

    def test_a_session_of_the_earlier_layout_is_read_then_rewritten_by_its_update(
            self, store: RedisStore, clock: FakeClock) -> None:
        record = Record({"a": b"1", "b": b"x" * 100}, clock.now - 5, clock.now - 1,
                        clock.now + HOUR, permanent=True, device="Firefox (192.0.2.1)")
        name = write_earlier_layout(store, "k1", record)
        assert store.load("k1") == record
        pending = store.prefetch("k1")
        assert pending is None or pending.result() == record
        assert store.update("k1", Patch(set={"c": b"3"}, delete=frozenset({"a"}),
                                        last_seen=clock.now))
        assert store.client.type(name) == b"string"
        assert 0 < store.client.pttl(name) <= HOUR * 1000  # the hash's TTL, kept
        assert store.load("k1") == dataclasses.replace(record, fields={"b": b"x" * 100, "c": b"3"},
                                                   last_seen=clock.now)

    def test_an_expired_session_of_the_earlier_layout_is_not_brought_back(
            self, store: RedisStore, clock: FakeClock) -> None:
        write_earlier_layout(store, "k1", make_record(clock, ttl=10, a=b"1"))
        clock.advance(10)
        assert store.load("k1") is None
        assert store.update("k1", Patch(set={"b": b"2"}, expires_at=clock.now + HOUR)) == 0
        store.create("k1", make_record(clock, c=b"3"))  # dead: a create may take its place
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {"c": b"3"}

    @pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 126, 127, 128, 254, 255, 256, 70_000])
    def test_values_and_names_of_every_length_round_trip(
            self, store: RedisStore, clock: FakeClock, size: int) -> None:
        text = (b'{"sku":"SKU-000001","qty":1},' * (size // 29 + 1))[:size]  # deflates
        noise = hashlib.shake_256(str(size).encode()).digest(size) if size else b""  # does not
        name = "n" * size or "x"
        record = make_record(clock, text=text, noise=noise, **{name: b"v" * size})
        store.create("k1", record)
        assert store.load("k1") == record
        patch = Patch(set={"text": noise, "noise": text, "more": text + b"!"},
                      delete=frozenset({name}))
        assert store.update("k1", patch)
        loaded = store.load("k1")
        assert loaded is not None
        assert loaded.fields == {"text": noise, "noise": text, "more": text + b"!"}

    def test_a_compressible_value_takes_less_room_than_its_bytes(
            self, store: RedisStore, clock: FakeClock) -> None:
        value = b'[' + b'{"sku":"SKU-000001","qty":1},' * 100 + b']'
        store.create("k1", make_record(clock, cart=value))
        assert store.client.strlen(f"{store.prefix}}}k1") < len(value) // 4


# -- helpers of the tests where the server answers but refuses ------------------------------


def unavailable(call: Callable[[], object]) -> BaseException:
    """Run ``call``, which must raise StoreUnavailable from a driver error; return that error."""
    with pytest.raises(StoreUnavailable) as info:
        call()
    assert KEY not in str(info.value) and OTHER not in str(info.value)
    cause = info.value.__cause__
    assert isinstance(cause, redis.exceptions.RedisError), repr(cause)
    return cause


def scripted_writes(store: RedisStore, clock: FakeClock) -> dict[str, Callable[[], object]]:
    """The writes the store makes by script: create ``OTHER`` (absent) and update ``KEY``
    (present)."""
    return {"create": lambda: store.create(OTHER, make_record(clock, b=b"2")),
            "update": lambda: store.update(KEY, Patch(set={"a": b"2"}, last_seen=clock.now,
                                                      expires_at=clock.now + 7200))}


def assert_unchanged(store: RedisStore, record: Record) -> None:
    assert store.load(KEY) == record
    assert store.load(OTHER) is None


def wait_for(what: str, ready: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@contextmanager
def primary_and_replica(
    connect_primary: Callable[[int], redis.Redis], connect_replica: Callable[[int], redis.Redis],
    clock: FakeClock, record: Record, binary: str = "redis-server",
) -> Iterator[tuple[RedisStore, RedisStore]]:
    """Start a ``binary`` primary and its replica, write ``record`` at ``KEY`` and wait until
    the replica has it; yield a store on the primary and one on the replica (one prefix)."""
    with (redis_server("--repl-diskless-sync-delay", "0", binary=binary) as primary_port,
          redis_server("--replicaof", HOST, str(primary_port), binary=binary) as replica_port):
        primary, replica = connect_primary(primary_port), connect_replica(replica_port)
        wait_for("the replica to sync", lambda: replica.info("replication").get(
            "master_link_status") == "up")
        prefix = random_prefix()
        # WAIT counts the writes of its own connection: create through the client's pool,
        # whose one idle connection WAIT then gets too.
        RedisStore(primary, prefix=prefix, clock=clock, keep_connections=False).create(KEY, record)
        assert primary.wait(1, 10_000) == 1
        yield (RedisStore(primary, prefix=prefix, clock=clock),
               RedisStore(replica, prefix=prefix, clock=clock))


def filled_past_maxmemory(client: redis.Redis, clock: FakeClock, record: Record) -> RedisStore:
    """A store on ``client`` holding ``record`` at ``KEY``, its server then filled past a
    maxmemory of 1 MB (under noeviction, it refuses writes that could grow it)."""
    store = RedisStore(client, prefix=random_prefix(), clock=clock)
    store.create(KEY, record)
    client.mset({f"filler:{i}": b"x" * 65536 for i in range(32)})
    client.config_set("maxmemory", "1mb")
    assert client.info("memory")["used_memory"] > 1 << 20
    return store
