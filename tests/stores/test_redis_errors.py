"""RedisStore when Redis answers but cannot serve: StoreUnavailable, chained, nothing written.

Each condition is made on a real ``redis-server`` the test starts on a free loopback
port (a replica for READONLY, maxmemory for OOM, a long script for BUSY, ...). TRYAGAIN
needs a multi-key command during resharding, which the store never sends, so it and the
replies that must *not* count as an outage are checked on a stand-in client.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import cannot_test, closed_port, drop_keys, random_prefix
from tests.services import redis_client as shared_redis_client

try:
    import redis
except ImportError:
    cannot_test("the Redis store tests need redis-py: pip install -e '.[redis]'")

from redis.backoff import NoBackoff
from redis.exceptions import (
    BusyLoadingError,
    DataError,
    MasterDownError,
    NoPermissionError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
    TryAgainError,
)
from redis.retry import Retry

from satchel.errors import StoreUnavailable
from satchel.store import Patch
from satchel.stores.redis import RedisStore
from tests.clock import FakeClock
from tests.stores.contract import make_record
from tests.stores.redis_cluster import HOST, missing_binaries, redis_server
from tests.stores.redis_shared import (
    KEY,
    OTHER,
    assert_unchanged,
    filled_past_maxmemory,
    primary_and_replica,
    scripted_writes,
    unavailable,
    wait_for,
)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def connect(port: int) -> redis.Redis:
    """A client that reports a failure at once, without retrying."""
    return redis.Redis(host=HOST, port=port, retry=Retry(NoBackoff(), 0), socket_timeout=10)


@pytest.fixture
def connections() -> Iterator[Callable[[int], redis.Redis]]:
    """``connect``, closing every client it made afterwards. Every test that starts its own
    server takes this fixture, which first checks that the binaries are there."""
    missing = missing_binaries()
    if missing:
        cannot_test(f"these tests start their own Redis servers and need {' and '.join(missing)}"
                    " on PATH (Debian: apt-get install redis-server redis-tools)")
    made: list[redis.Redis] = []

    def make(port: int) -> redis.Redis:
        made.append(connect(port))
        return made[-1]
    yield make
    for client in made:
        client.close()


def writes(store: RedisStore, clock: FakeClock) -> dict[str, Callable[[], object]]:
    """Every store call that writes: the scripted ones, and a plain DEL of ``KEY``."""
    return {**scripted_writes(store, clock), "delete": lambda: store.delete(KEY)}


def listening(port: int) -> bool:
    """True once something accepts connections on ``port`` (it may not serve yet)."""
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


def test_readonly_replica(clock: FakeClock,
                          connections: Callable[[int], redis.Redis]) -> None:
    record = make_record(clock, a=b"1")
    with primary_and_replica(connections, connections, clock, record) as (primary, store):
        assert store.load(KEY) == record  # a replica still serves reads
        for name, call in writes(store, clock).items():
            assert isinstance(unavailable(call), ReadOnlyError), name
        assert_unchanged(store, record)
        assert_unchanged(primary, record)


def test_out_of_memory_with_noeviction(clock: FakeClock,
                                       connections: Callable[[int], redis.Redis]) -> None:
    with redis_server("--maxmemory-policy", "noeviction") as port:
        record = make_record(clock, a=b"1")
        store = filled_past_maxmemory(connections(port), clock, record)
        calls = writes(store, clock)
        for name in ("create", "update"):
            assert isinstance(unavailable(calls[name]), OutOfMemoryError), name
        assert_unchanged(store, record)
        store.delete(KEY)  # Redis lets a delete through: it frees memory
        assert store.load(KEY) is None


def test_busy_script(clock: FakeClock, connections: Callable[[int], redis.Redis]) -> None:
    with redis_server("--lua-time-limit", "20") as port:
        client = connections(port)
        store = RedisStore(client, prefix=random_prefix(), clock=clock)
        record = make_record(clock, a=b"1")
        store.create(KEY, record)
        killed: list[Exception] = []
        spinning = threading.Thread(target=_spin, args=(connections(port), killed), daemon=True)
        spinning.start()
        try:
            wait_for("the server to report BUSY", lambda: _busy(client))
            calls = {"load": lambda: store.load(KEY), **writes(store, clock)}
            for name, call in calls.items():
                cause = unavailable(call)
                assert type(cause) is ResponseError and str(cause).startswith("BUSY "), name
        finally:
            killer = connect(port)
            killer.script_kill()
            killer.close()
            spinning.join(10)
        assert len(killed) == 1 and "killed" in str(killed[0])
        assert_unchanged(store, record)


def _spin(client: redis.Redis, killed: list[Exception]) -> None:
    try:
        client.eval("while true do end", 0)
    except ResponseError as err:
        killed.append(err)


def _busy(client: redis.Redis) -> bool:
    try:
        client.ping()
    except ResponseError as err:
        return str(err).startswith("BUSY ")
    return False


def test_not_enough_replicas(clock: FakeClock,
                             connections: Callable[[int], redis.Redis]) -> None:
    with redis_server() as port:
        client = connections(port)
        store = RedisStore(client, prefix=random_prefix(), clock=clock)
        record = make_record(clock, a=b"1")
        store.create(KEY, record)
        client.config_set("min-replicas-to-write", 1)
        for name, call in writes(store, clock).items():
            cause = unavailable(call)
            assert type(cause) is ResponseError and str(cause).startswith("NOREPLICAS "), name
        assert_unchanged(store, record)


def test_replica_cut_off_from_its_primary(clock: FakeClock,
                                          connections: Callable[[int], redis.Redis]) -> None:
    with redis_server("--replicaof", HOST, str(closed_port()),
                      "--replica-serve-stale-data", "no", ready=listening) as port:
        store = RedisStore(connections(port), prefix=random_prefix(), clock=clock)
        assert is_master_down(unavailable(lambda: store.load(KEY)))
        for name, call in writes(store, clock).items():  # a plain DEL is READONLY first
            cause = unavailable(call)
            assert is_master_down(cause) or isinstance(cause, ReadOnlyError), name


def is_master_down(error: BaseException) -> bool:
    """MASTERDOWN: its own class in newer redis-py, a ResponseError in 5.3 (which satchel
    recognises by the reply's first word)."""
    return isinstance(error, MasterDownError) or (
        isinstance(error, ResponseError) and str(error).startswith("MASTERDOWN "))


def test_loading_dataset(clock: FakeClock, tmp_path: Path,
                         connections: Callable[[int], redis.Redis]) -> None:
    prefix = random_prefix()
    with redis_server(tmp=tmp_path) as port:
        client = connections(port)
        RedisStore(client, prefix=prefix, clock=clock).create(KEY, make_record(clock, a=b"1"))
        client.mset({f"filler:{i}": os.urandom(2048) for i in range(200)})  # incompressible
        client.save()
    # 20 ms per key: the dataset takes seconds to load, answering LOADING between keys.
    with redis_server("--key-load-delay", "20000",
                      "--loading-process-events-interval-bytes", "1024",
                      tmp=tmp_path, ready=listening) as port:
        store = RedisStore(connections(port), prefix=prefix, clock=clock)
        calls = {"load": lambda: store.load(KEY), **writes(store, clock)}
        for name, call in calls.items():
            assert isinstance(unavailable(call), BusyLoadingError), name


def test_flushed_script_cache_is_reloaded(clock: FakeClock,
                                          connections: Callable[[int], redis.Redis]) -> None:
    with redis_server() as port:
        client = connections(port)
        store = RedisStore(client, prefix=random_prefix(), clock=clock)
        store.create(KEY, make_record(clock, a=b"1"))
        client.script_flush()  # as after a restart or a failover to a fresh node
        assert store.update(KEY, Patch(set={"a": b"2"}))
        client.script_flush()
        store.create(OTHER, make_record(clock, b=b"2"))
        loaded, other = store.load(KEY), store.load(OTHER)
        assert loaded is not None and loaded.fields == {"a": b"2"}
        assert other is not None and other.fields == {"b": b"2"}


def test_wrong_type_at_a_session_key_is_not_an_outage(clock: FakeClock) -> None:
    with shared_redis_client() as client:
        prefix = random_prefix()
        try:
            store = RedisStore(client, prefix=prefix, clock=clock)
            client.rpush(store._names.of(KEY), b"not a session")
            with pytest.raises(ResponseError, match="WRONGTYPE") as info:
                store.load(KEY)
            assert not isinstance(info.value, StoreUnavailable)
        finally:
            drop_keys(client, prefix)


# -- replies checked on a stand-in client ------------------------------------------------------


class FailingClient:
    """Stands in for ``redis.Redis``: every command raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_connection_kwargs(self) -> dict[str, Any]:
        return {"host": HOST, "port": 6379, "db": 0}

    def hgetall(self, name: bytes) -> dict[bytes, bytes]:
        raise self.error

    def execute_command(self, *args: Any, **options: Any) -> Any:
        raise self.error

    def delete(self, *names: bytes) -> int:
        raise self.error


def calls_on(store: RedisStore, clock: FakeClock) -> list[Callable[[], object]]:
    return [lambda: store.load(KEY),
            lambda: store.create(KEY, make_record(clock)),
            lambda: store.update(KEY, Patch(set={"a": b"1"})),
            lambda: store.delete(KEY)]


@pytest.mark.parametrize("error", [
    TryAgainError("Multiple keys request during rehashing of slot"),
    ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or"
                  " SHUTDOWN NOSAVE."),
    ResponseError("NOREPLICAS Not enough good replicas to write."),
    ReadOnlyError("You can't write against a read only replica."),
    OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    BusyLoadingError("Redis is loading the dataset in memory"),
    MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
], ids=lambda err: type(err).__name__ + ":" + str(err).split(" ")[0])
def test_replies_that_mean_unavailable(error: Exception, clock: FakeClock) -> None:
    store = RedisStore(FailingClient(error), clock=clock)  # type: ignore[arg-type]
    for call in calls_on(store, clock):
        with pytest.raises(StoreUnavailable, match=f"<RedisStore {HOST}:6379/0 ") as info:
            call()
        assert info.value.__cause__ is error


@pytest.mark.parametrize("error", [
    ResponseError("BUSYKEY Target key name already exists."),
    ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    ResponseError("ERR unknown command 'EVALSHA'"),
    NoPermissionError("this user has no permissions to run the 'evalsha' command"),
    DataError("Invalid input of type: 'NoneType'"),
], ids=lambda err: type(err).__name__ + ":" + str(err).split(" ")[0])
def test_other_driver_errors_pass_through(error: Exception, clock: FakeClock) -> None:
    store = RedisStore(FailingClient(error), clock=clock)  # type: ignore[arg-type]
    for call in calls_on(store, clock):
        with pytest.raises(type(error)) as info:
            call()
        assert info.value is error
