"""RedisStore against a real Redis (SATCHEL_TEST_REDIS_URL) and a throwaway Redis Cluster."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.services import (
    REDIS_URL,
    cannot_test,
    closed_port,
    drop_keys,
    drops_to,
    random_prefix,
)
from tests.services import redis_client as shared_redis_client

try:
    import redis
except ImportError:
    cannot_test("the Redis store tests need redis-py: pip install -e '.[redis]'")

from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from satchel.errors import ConfigError, StoreUnavailable
from satchel.store import Patch, Record, Updated, apply_patch
from satchel.stores.redis import RedisStore
from satchel.stores.redis.record import Head, decode
from tests.clock import FakeClock
from tests.stores.contract import HOUR, PrefetchContract, StoreContract, make_record
from tests.stores.redis_cluster import HOST, free_ports, missing_binaries, redis_cluster
from tests.stores.redis_legacy import RedisLegacyNamesContract
from tests.stores.redis_merge import RedisFastUpdateContract
from tests.stores.redis_record import RedisRecordVersionsContract
from tests.stores.redis_shared import KEY as SECRET_KEY
from tests.stores.redis_shared import RedisProtocolContract, write_earlier_layout
from tests.stores.redis_users import RedisUserSetContract


@pytest.fixture(scope="module")
def redis_client() -> Iterator[redis.Redis]:
    with shared_redis_client() as client:
        yield client


@pytest.fixture(scope="module")
def admin(redis_client: redis.Redis) -> redis.Redis:
    return redis_client


@pytest.fixture(scope="module")
def connect_to(redis_client: redis.Redis) -> Callable[[int | None], redis.Redis]:
    """A new client of the test server (``redis_client`` checked it answers), by protocol."""
    return lambda protocol: redis.Redis.from_url(REDIS_URL, protocol=protocol,
                                                 socket_connect_timeout=2)


def assert_logged_miss(store: RedisStore, caplog: pytest.LogCaptureFixture,
                      problem: str) -> None:
    """``store.load(SECRET_KEY)`` is a miss, logged once on satchel.security, naming
    ``problem`` and not the key."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="satchel"):
        assert store.load(SECRET_KEY) is None
    [entry] = caplog.records
    assert (entry.name, entry.levelno) == ("satchel.security", logging.WARNING)
    assert problem in entry.getMessage() and "treated as missing" in entry.getMessage()
    assert SECRET_KEY not in entry.getMessage() and "\n" not in entry.getMessage()


class TestRedisStore(RedisProtocolContract):
    through_client_protocol = None  # redis-py's default (RESP3), as an app's client has it

    def test_update_of_missing_or_expired_changes_nothing(
        self, store: RedisStore, clock: FakeClock
    ) -> None:
        outcome = store.update("ghost", Patch(set={"a": b"1"}, expires_at=clock.now + HOUR))
        assert outcome == Updated.GONE
        assert store.client.exists(store._names.of("ghost"), f"{store.prefix}{{ghost}}") == 0
        store.create("k1", make_record(clock, ttl=10, a=b"1"))
        clock.advance(10)  # expired by the store's clock; Redis still holds the key
        assert store.update("k1", Patch(set={"a": b"2"}, clear=True, user="eve",
                                        expires_at=clock.now + HOUR)) == Updated.GONE
        name = store._names.of("k1")
        stored = decode(store.client.get(name), clock.now - 10)
        assert isinstance(stored, Record)
        assert (stored.fields, stored.user) == ({"a": b"1"}, None)
        assert 0 < store.client.pttl(name) <= 10_000

    def test_field_names_never_collide_with_metadata(
        self, store: RedisStore, clock: FakeClock
    ) -> None:
        fields = {"m:created": b"x", "m:expires": b"0", "m:user": b"u", "f:x": b"y", "m:": b""}
        record = Record(dict(fields), clock.now, clock.now, clock.now + HOUR)
        store.create("k1", record)
        assert store.load("k1") == record
        assert store.update("k1", Patch(set={"m:perm": b"1"}, delete=frozenset({"m:user"})))
        assert store.update("k1", Patch(clear=True, set={"m:seen": b"s"}))
        loaded = store.load("k1")
        assert loaded is not None and loaded.fields == {"m:seen": b"s"}
        assert (loaded.created_at, loaded.expires_at, loaded.user) == (
            clock.now, clock.now + HOUR, None)

    def test_many_fields_match_the_reference_semantics(
        self, store: RedisStore, clock: FakeClock
    ) -> None:
        record = make_record(clock, **{f"k{i}": b"v" for i in range(2500)})
        store.create("k1", record)
        patches = [Patch(delete=frozenset(f"k{i}" for i in range(1200, 3700)),
                         set={f"n{i}": b"w" for i in range(1500)}),
                   Patch(clear=True, set={f"m{i}": b"x" for i in range(2100)},
                         delete=frozenset({"m0", "k1"}))]
        for patch in patches:
            assert store.update("k1", patch)
            apply_patch(record, patch)
            assert store.load("k1") == record

    @pytest.mark.parametrize(("damage", "problem", "dead"), [
        pytest.param(lambda c, name, now: c.hdel(name, "m:created"), "no m:created", False,
                     id="no-created"),
        pytest.param(lambda c, name, now: (c.delete(name),
                                           c.hset(name, "m:expires", repr(now + HOUR))),
                     "no m:created", False, id="partial-write"),
        pytest.param(lambda c, name, now: c.hset(name, "m:seen", "soon"), "not a number", False,
                     id="bad-seen"),
        pytest.param(lambda c, name, now: c.hset(name, b"f:\xff", b"1"), "not UTF-8", False,
                     id="bad-field-name"),
        pytest.param(lambda c, name, now: (c.delete(name), c.hset(name, "stray", "x")),
                     "no m:expires", True, id="only-a-stray-field"),
        pytest.param(lambda c, name, now: c.hset(name, "m:expires", "never"), "not a number",
                     True, id="bad-expires"),
    ])
    def test_malformed_hash_of_the_earlier_layout_is_a_logged_miss(
        self, store: RedisStore, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        damage: Callable[[Any, str, float], object], problem: str, dead: bool,
    ) -> None:
        name = write_earlier_layout(store, SECRET_KEY, make_record(clock, a=b"1"))
        damage(store.client, name, clock.now)
        assert_logged_miss(store, caplog, problem)
        if dead:  # without a readable m:expires, the hash is dead to update and create too
            assert store.update(SECRET_KEY, Patch(set={"b": b"2"})) == Updated.GONE
            store.create(SECRET_KEY, make_record(clock, c=b"3"))
            loaded = store.load(SECRET_KEY)
            assert loaded is not None and loaded.fields == {"c": b"3"}

    @pytest.mark.parametrize(("damage", "lua_sees"), [
        # Metadata that cannot be read: dead to update and to create (which replaces it).
        pytest.param(lambda data: data[:5], "dead", id="cut-in-the-metadata"),
        pytest.param(lambda data: data[:1] + b"\xff" * 9 + data[10:], "dead",
                     id="endless-varint"),
        pytest.param(lambda data: b"", "dead", id="empty"),
        pytest.param(lambda data: b"\x30" + data[1:], "dead", id="unknown-version"),
        pytest.param(lambda data: b"\x02" + data[1:], "dead", id="version-byte-2"),
        # Fields that cannot be split: an update that merges refuses it.
        pytest.param(lambda data: data[:-1], "unmergeable", id="cut-short"),
        # Lua moves names and values as bytes: it cannot tell these are wrong.
        pytest.param(lambda data: data[:Head(data).end] + b"\x01\xff"
                     + data[Head(data).end + 2:], "opaque",
                     id="bad-field-name"),
        pytest.param(lambda data: data[:-5] + b"XXXXX", "opaque", id="bad-deflated-value"),
    ])
    def test_malformed_record_is_a_logged_miss(
        self, store: RedisStore, clock: FakeClock, caplog: pytest.LogCaptureFixture,
        damage: Callable[[bytes], bytes], lua_sees: str,
    ) -> None:
        name = store._names.of(SECRET_KEY)
        store.create(SECRET_KEY, make_record(clock, a=b"[" + b"1," * 60 + b"1]"))
        store.client.set(name, damage(store.client.get(name)), keepttl=True)
        assert_logged_miss(store, caplog, "not a session record")
        outcome = store.update(SECRET_KEY, Patch(set={"b": b"2"}))
        assert outcome == (Updated.KEPT if lua_sees == "opaque" else Updated.GONE)
        assert_logged_miss(store, caplog, "not a session record")
        if lua_sees == "dead":
            store.create(SECRET_KEY, make_record(clock, c=b"3"))
            loaded = store.load(SECRET_KEY)
            assert loaded is not None and loaded.fields == {"c": b"3"}

    def test_stray_fields_beside_a_session_of_the_earlier_layout_are_ignored(
        self, store: RedisStore, clock: FakeClock, caplog: pytest.LogCaptureFixture
    ) -> None:
        record = make_record(clock, a=b"1")
        name = write_earlier_layout(store, "k1", record)
        store.client.hset(name, mapping={"stray": "x", "m:future": "1"})
        with caplog.at_level(logging.INFO, logger="satchel"):
            assert store.load("k1") == record
            assert store.update("k1", Patch(set={"b": b"2"}))
            assert store.load("k1") == dataclasses.replace(record, fields={"a": b"1", "b": b"2"})
        assert caplog.records == []

    def test_repr_shows_the_server_not_keys(self, store: RedisStore, clock: FakeClock) -> None:
        store.create(SECRET_KEY, make_record(clock))
        kwargs = store.client.get_connection_kwargs()
        assert f"{kwargs['host']}:{kwargs['port']}" in repr(store)
        assert SECRET_KEY not in repr(store)

    def test_through_the_client_hooks_added_later_see_every_command(
        self, redis_client: redis.Redis, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = RedisStore(redis_client, prefix=random_prefix(), clock=clock,
                           keep_connections=False)
        seen: list[str] = []
        original = redis_client.execute_command

        def traced(*args: Any, **options: Any) -> Any:  # as a tracing integration wraps it
            seen.append(str(args[0]))
            return original(*args, **options)  # type: ignore[no-untyped-call]

        monkeypatch.setattr(redis_client, "execute_command", traced)
        store.create("k1", make_record(clock, ttl=100, a=b"1"))
        assert store.load("k1") is not None
        assert store.update("k1", Patch(set={"a": b"2"}))
        store.delete("k1")
        assert seen == ["EVALSHA", "GET", "EVALSHA", "DEL"]

    def test_decode_responses_client_is_refused(self) -> None:
        with pytest.raises(ConfigError, match="decode_responses"):
            RedisStore(redis.Redis.from_url(REDIS_URL, decode_responses=True))

    def test_prefix_with_a_hash_tag_is_refused(self, redis_client: redis.Redis) -> None:
        with pytest.raises(ConfigError, match="prefix"):
            RedisStore(redis_client, prefix="app{1}:")


@pytest.mark.parametrize("url", ["redis://", "redis:///0", "rediss://", "unix://",
                                 "redis+cluster://", "redis://:s3cret@/0"])
def test_from_url_without_host_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="no host") as info:
        RedisStore.from_url(url)
    assert "s3cret" not in str(info.value)


def test_from_url_rejects_other_schemes() -> None:
    with pytest.raises(ConfigError, match="unknown scheme"):
        RedisStore.from_url("http://127.0.0.1:6379")
    with pytest.raises(ConfigError, match="port"):
        RedisStore.from_url("redis://127.0.0.1:notaport/0")


def test_from_url_builds_each_kind_of_client() -> None:
    tls = RedisStore.from_url("rediss://user:s3cret@cache.example:6380/2", prefix="app:")
    assert tls.client.connection_pool.connection_class.__name__ == "SSLConnection"
    assert repr(tls) == "<RedisStore cache.example:6380/2 prefix='app:'>"
    sock = RedisStore.from_url("unix:///run/redis/redis.sock?db=1")
    assert sock.client.connection_pool.connection_class.__name__ == "UnixDomainSocketConnection"
    assert repr(sock) == "<RedisStore unix:/run/redis/redis.sock prefix='satchel:'>"
    tls.close()
    sock.close()


def test_closed_port_raises_store_unavailable() -> None:
    port = closed_port()
    client = redis.Redis(host=HOST, port=port, retry=Retry(NoBackoff(), 0))
    store = RedisStore(client)
    clock = FakeClock()
    calls = [lambda: store.load(SECRET_KEY),
             lambda: store.create(SECRET_KEY, make_record(clock)),
             lambda: store.update(SECRET_KEY, Patch(set={"a": b"1"})),
             lambda: store.delete(SECRET_KEY)]
    for call in calls:
        with pytest.raises(StoreUnavailable, match=f"RedisStore {HOST}:{port}") as info:
            call()
        assert isinstance(info.value.__cause__, redis.exceptions.ConnectionError)
        assert SECRET_KEY not in str(info.value)
    client.close()


def test_a_client_that_retries_is_named_in_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Each retry may wait out the socket timeout again: a stalled server would hold a
    request for (1 + retries) timeouts plus back-off, so the store says so, with the fix."""
    client = redis.Redis(host=HOST, port=closed_port(), socket_timeout=1,
                         socket_connect_timeout=1, retry=Retry(NoBackoff(), 3))
    with caplog.at_level(logging.WARNING, logger="satchel"):
        RedisStore(client, keep_connections=False)
    [line] = [r.getMessage() for r in caplog.records]
    assert "up to 3 times" in line and "Retry(redis.backoff.NoBackoff(), 0)" in line


def test_from_url_builds_a_client_that_does_not_retry(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="satchel"):
        store = RedisStore.from_url(f"redis://{HOST}:{closed_port()}/0")
    try:
        assert not [r for r in caplog.records if "retry" in r.getMessage()]
    finally:
        store.close()


def test_closed_port_from_url_raises_store_unavailable() -> None:
    store = RedisStore.from_url(f"redis://{HOST}:{closed_port()}/0")
    with pytest.raises(StoreUnavailable):
        store.load(SECRET_KEY)
    store.close()


# -- Redis Cluster -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_ports() -> Iterator[list[int]]:
    missing = missing_binaries()
    if missing:
        cannot_test(f"Redis Cluster tests need {' and '.join(missing)} on PATH"
                     " (Debian: apt-get install redis-server redis-tools)")
    with redis_cluster() as ports:
        yield ports


@pytest.fixture(scope="module")
def cluster_client(cluster_ports: list[int]) -> Iterator[RedisCluster]:
    client = RedisCluster(host=HOST, port=cluster_ports[0])
    yield client
    client.close()


class TestRedisClusterStore(StoreContract, PrefetchContract, RedisUserSetContract,
                            RedisLegacyNamesContract, RedisRecordVersionsContract,
                            RedisFastUpdateContract):
    @pytest.fixture
    def store(self, clock: FakeClock, cluster_client: RedisCluster) -> Iterator[RedisStore]:
        prefix = random_prefix()
        yield RedisStore(cluster_client, prefix=prefix, clock=clock)
        drop_keys(cluster_client, prefix)

    def test_sessions_spread_over_nodes_each_in_one_slot(
        self, store: RedisStore, clock: FakeClock
    ) -> None:
        client = store.client
        keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(60)]
        nodes, slots = set(), set()
        for key in keys:
            store.create(key, make_record(clock, a=b"1", b=b"2"))
            name = store._names.of(key)
            assert b"{" not in name  # no hash tag: the whole name decides the slot
            slots.add(client.keyslot(name))
            nodes.add(client.get_node_from_key(name).name)
            assert store.update(key, Patch(set={"c": key.encode()}, delete=frozenset({"a"}),
                                           last_seen=clock.now, expires_at=clock.now + HOUR,
                                           user="u"))
        assert len(nodes) == 3 and len(slots) > 50
        for key in keys:
            loaded = store.load(key)
            assert loaded is not None and loaded.fields == {"b": b"2", "c": key.encode()}
            assert loaded.user == "u"
            store.delete(key)
            assert store.load(key) is None
            assert store.update(key, Patch(set={"a": b"1"})) == Updated.GONE

    def test_repr_says_cluster(self, store: RedisStore) -> None:
        assert repr(store).startswith("<RedisStore cluster ")

    def test_from_url(self, cluster_ports: list[int], clock: FakeClock,
                      caplog: pytest.LogCaptureFixture) -> None:
        prefix = random_prefix()
        with caplog.at_level(logging.WARNING, logger="satchel"):  # no retries: no warning
            store = RedisStore.from_url(f"redis+cluster://{HOST}:{cluster_ports[1]}",
                                        prefix=prefix, clock=clock)
        try:
            assert not caplog.records
            assert isinstance(store.client, RedisCluster)
            store.create("k1", make_record(clock, a=b"1"))
            loaded = store.load("k1")
            assert loaded is not None and loaded.fields == {"a": b"1"}
        finally:
            drop_keys(store.client, prefix)
            store.close()

    def test_stores_from_one_url_share_one_client_which_the_last_close_closes(
        self, cluster_ports: list[int], clock: FakeClock
    ) -> None:
        """As for one server (tests/test_resources.py): apps built on one cluster URL share one
        client, so the nodes see one client's connections however many apps there are."""
        from flask import Flask, session

        from satchel import Satchel

        name = f"satchel-test-{uuid.uuid4().hex[:12]}"
        url = f"redis+cluster://{HOST}:{cluster_ports[2]}?client_name={name}"
        nodes = [redis.Redis(host=HOST, port=port) for port in cluster_ports]

        def connections() -> int:
            return sum(client.get("name") == name for node in nodes
                       for client in node.client_list())

        stores, counts = [], []
        for number in range(60):
            app = Flask(f"cluster{number}")
            app.config.update(SECRET_KEY="cluster test secret " * 2, SATCHEL_STORE=url)
            Satchel(app)
            app.add_url_rule("/", "write", lambda: session.update(n=1) or "ok", methods=["POST"])
            app.add_url_rule("/", "end", lambda: session.clear() or "ok", methods=["DELETE"])
            client = app.test_client()
            assert client.post("/").status_code == 200
            assert client.delete("/").status_code == 200  # the run leaves no session behind
            stores.append(Satchel.store_of(app))
            assert stores[-1].client is stores[0].client  # type: ignore[attr-defined]
            counts.append(connections())
        assert 1 <= counts[-1] == counts[9] <= len(nodes) * 2
        for store in stores:
            store.close()  # type: ignore[attr-defined]
        assert drops_to(connections, 0) == 0
        for node in nodes:
            node.close()

    def test_unreachable_cluster_raises_store_unavailable_on_use(self) -> None:
        store = RedisStore.from_url(f"redis+cluster://{HOST}:{closed_port()}")
        try:
            with pytest.raises(StoreUnavailable, match="<RedisStore cluster "):
                store.load(SECRET_KEY)
        finally:
            store.close()

    def test_app_starts_while_its_cluster_is_down(
        self, cluster_ports: list[int], caplog: pytest.LogCaptureFixture
    ) -> None:
        """RedisCluster connects in its constructor: the store builds it on first use instead,
        so the app starts, answers 503, and the first request once the cluster is up works."""
        from flask import Flask, session

        from satchel import Satchel

        ports = free_ports(3)
        app = Flask("cluster_down")
        app.config.update(SECRET_KEY="cluster test secret " * 2,
                          SATCHEL_STORE=f"redis+cluster://{HOST}:{ports[0]}")
        with caplog.at_level(logging.WARNING, logger="satchel"):
            Satchel(app)
        [line] = [r.getMessage() for r in caplog.records]
        assert "no cluster node answers at start" in line and f":{ports[0]}" in line
        app.add_url_rule("/", "write", lambda: session.update(n=1) or "ok", methods=["POST"])
        app.add_url_rule("/", "read", lambda: str(session.get("n")))
        client = app.test_client()
        store = Satchel.store_of(app)
        try:
            assert client.post("/").status_code == 503
            assert client.post("/").status_code == 503
            with redis_cluster(ports=ports):
                assert client.post("/").status_code == 200  # the first request once it is up
                assert client.get("/").get_data(as_text=True) == "1"
                assert isinstance(store.client, RedisCluster)  # type: ignore[attr-defined]
        finally:
            store.close()  # type: ignore[attr-defined]
