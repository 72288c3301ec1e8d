"""A ``redis+cluster://`` store on a Redis Cluster the test owns, while the cluster misbehaves.

Every node hung at once (SIGSTOP): one store call waits out the timeout once, not once per
node (redis-py rebuilt its slot map inside the failing call, asking each node in turn), and
the first call once the nodes go on succeeds. A primary that hangs and is replaced by its
replica: the store follows the replica. A slot migrated under the store: ASK, then MOVED.

Each test starts its own cluster (it stops, fails over or reshards it), on loopback ports.
The durations are printed: run with ``-s``. Timing goals belong in bench/; the bounds here
are generous and only catch a multiplication of the timeout.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.clock import FakeClock
from tests.services import cannot_test, need_module
from tests.stores.contract import make_record
from tests.stores.redis_cluster import HOST, Node, cluster_nodes, missing_binaries

TIMEOUT = 1.0  # the store's timeout (SATCHEL_STORE_TIMEOUT) in these tests
KEY = "k" * 43  # a storage key, as the engine makes them


@contextmanager
def own_cluster(nodes: int = 3, *, replicas: int = 0,
                options: tuple[str, ...] = ()) -> Iterator[list[Node]]:
    need_module("redis")
    missing = missing_binaries()
    if missing:
        cannot_test(f"the Redis Cluster fault tests need {' and '.join(missing)} on PATH"
                    " (Debian: apt-get install redis-server redis-tools)")
    with cluster_nodes(nodes, replicas=replicas, options=options) as started:
        yield started


def failure_after(call: Callable[[], object]) -> tuple[Exception, float]:
    """The StoreUnavailable ``call()`` raises, and the seconds it took to raise it."""
    from satchel.errors import StoreUnavailable

    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        call()
    return raised.value, time.monotonic() - started


def test_every_node_hung_one_call_waits_one_timeout() -> None:
    from satchel.store import Patch, Updated
    from satchel.stores.redis import RedisStore

    clock = FakeClock()
    with own_cluster() as nodes:
        store = RedisStore.from_url(f"redis+cluster://{HOST}:{nodes[0].port}",
                                    timeout=TIMEOUT, clock=clock)
        try:
            store.create(KEY, make_record(clock, a=b"1"))
            for node in nodes:
                node.pause()
            try:
                _, load = failure_after(lambda: store.load(KEY))
                # The breaker is open now: this call is its probe (and the slot-map refresh
                # the load's deadline cut short, owed since).
                _, update = failure_after(lambda: store.update(KEY, Patch(set={"a": b"2"})))
            finally:
                for node in nodes:
                    node.go_on()
            print(f"\nevery node hung: load {load:.3f} s, update {update:.3f} s"
                  f" (timeout {TIMEOUT} s, {len(nodes)} nodes)")
            # Generous, for a loaded machine: the slot-map refresh inside the failing call
            # made it (1 + nodes) x the timeout (redis-py 6+; nodes x on 5.x).
            assert load < 2.5 * TIMEOUT and update < 2.5 * TIMEOUT, (load, update)
            loaded = store.load(KEY)  # the first call once the nodes go on
            assert loaded is not None and loaded.fields == {"a": b"1"}
            assert store.update(KEY, Patch(set={"a": b"3"})) == Updated.KEPT
            loaded = store.load(KEY)
            assert loaded is not None and loaded.fields == {"a": b"3"}
        finally:
            store.close()


def test_every_node_hung_under_load_each_call_waits_one_timeout() -> None:
    """Twelve threads keep loading and updating while every node hangs for a while: no call
    takes much more than the timeout. (A call whose command failed waited on redis-py's
    slot-map refresh lock while the breaker's probe refreshed under its own deadline: 2 and
    3 timeouts.)"""
    import threading

    from satchel.errors import StoreUnavailable
    from satchel.store import Patch
    from satchel.stores.redis import RedisStore

    clock = FakeClock()
    with own_cluster() as nodes:
        store = RedisStore.from_url(f"redis+cluster://{HOST}:{nodes[0].port}",
                                    timeout=TIMEOUT, clock=clock)
        keys = [f"{n:064x}" for n in range(12)]
        stop = threading.Event()
        took: list[float] = []

        def work(key: str) -> None:
            while not stop.is_set():
                for call in (lambda: store.load(key),
                             lambda: store.update(key, Patch(set={"b": b"2"}))):
                    started = time.monotonic()
                    try:
                        call()
                    except StoreUnavailable:
                        pass
                    took.append(time.monotonic() - started)
                time.sleep(0.01)

        try:
            for key in keys:
                store.create(key, make_record(clock, a=b"1"))
            threads = [threading.Thread(target=work, args=(key,)) for key in keys]
            for thread in threads:
                thread.start()
            time.sleep(0.5)
            for node in nodes:
                node.pause()
            try:
                time.sleep(5 * TIMEOUT)
            finally:
                for node in nodes:
                    node.go_on()
            time.sleep(2 * TIMEOUT)
            stop.set()
            for thread in threads:
                thread.join(30)
            print(f"\n{len(took)} calls, every node hung for a while: slowest {max(took):.3f} s")
            assert max(took) < 1.8 * TIMEOUT, sorted(took)[-5:]  # generous; it was 2 and 3 x
            for key in keys:  # the nodes are back: every session is there
                loaded = store.load(key)
                assert loaded is not None and loaded.fields["a"] == b"1"
        finally:
            stop.set()
            store.close()


def _cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-h", HOST, "-p", str(port), *args], capture_output=True,
                          text=True, timeout=10, check=True).stdout.strip()


def _wait_for(what: str, ready: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_store_follows_the_replica_that_replaces_a_hung_primary() -> None:
    """The primary of the session's slot hangs; the cluster promotes its replica. A call to
    the hung primary fails within the timeout, cutting short redis-py's refresh of the slot
    map; the refresh is owed, so a later call finds the replica and gets the session back."""
    import redis

    from satchel.errors import StoreUnavailable
    from satchel.stores.redis import RedisStore

    clock = FakeClock()
    options = ("--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0")
    with own_cluster(6, replicas=1, options=options) as nodes:
        store = RedisStore.from_url(f"redis+cluster://{HOST}:{nodes[0].port}",
                                    timeout=TIMEOUT, clock=clock)
        try:
            store.create(KEY, make_record(clock, a=b"1"))
            name = store._names.of(KEY)
            [primary] = [n for n in nodes if n.port == store.client.get_node_from_key(name).port]
            [replica] = [n for n in nodes if f"master_port:{primary.port}"
                         in _cli(n.port, "info", "replication").split()]
            with redis.Redis(host=HOST, port=replica.port) as direct:
                direct.execute_command("READONLY")
                _wait_for("the session on the replica", lambda: direct.exists(name) == 1)
            primary.pause()
            try:
                slowest, failures, loaded = 0.0, 0, None
                deadline = time.monotonic() + 20
                while loaded is None and time.monotonic() < deadline:
                    started = time.monotonic()
                    try:
                        loaded = store.load(KEY)
                    except StoreUnavailable:  # until the replica takes over
                        failures += 1
                    slowest = max(slowest, time.monotonic() - started)
                    if loaded is None:
                        time.sleep(0.2)
            finally:
                primary.go_on()
            print(f"\nhung primary: {failures} calls failed (slowest {slowest:.3f} s) before"
                  " the store found the promoted replica")
            assert failures > 0  # the hang was felt
            assert loaded is not None and loaded.fields == {"a": b"1"}  # before the primary is back
            assert slowest < 2.5 * TIMEOUT, slowest  # generous: see the test above
        finally:
            store.close()


def test_slot_migrated_under_the_store_ask_then_moved() -> None:
    from satchel.store import Patch, Updated
    from satchel.stores.redis import RedisStore

    clock = FakeClock()
    with own_cluster() as nodes:
        store = RedisStore.from_url(f"redis+cluster://{HOST}:{nodes[0].port}",
                                    timeout=TIMEOUT, clock=clock)
        try:
            store.create(KEY, make_record(clock, a=b"1"))
            name = store._names.of(KEY)
            slot = str(store.client.keyslot(name))
            [source] = [n for n in nodes if n.port == store.client.get_node_from_key(name).port]
            target = next(n for n in nodes if n is not source)
            ids = {n.port: _cli(n.port, "cluster", "myid") for n in nodes}
            _cli(target.port, "cluster", "setslot", slot, "importing", ids[source.port])
            _cli(source.port, "cluster", "setslot", slot, "migrating", ids[target.port])
            assert _cli(source.port, "migrate", HOST, str(target.port), name, "0",
                        "5000") == "OK"
            loaded = store.load(KEY)  # the source answers ASK: the store asks the target
            assert loaded is not None and loaded.fields == {"a": b"1"}
            assert store.update(KEY, Patch(set={"a": b"2"})) == Updated.KEPT
            for node in nodes:
                _cli(node.port, "cluster", "setslot", slot, "node", ids[target.port])
            loaded = store.load(KEY)  # the source answers MOVED: the store follows
            assert loaded is not None and loaded.fields == {"a": b"2"}
            assert store.client.get_node_from_key(name).port == target.port
        finally:
            store.close()


def test_slot_map_can_be_rebuilt_after_every_node_failed() -> None:
    """redis-py 5 forgets each node a command failed on, as a source of slot maps: once every
    node has failed, no refresh could pass again (after a failover, say), though the nodes are
    back. The client refreshes from the nodes its slot map names."""
    from redis.exceptions import RedisClusterException, RedisError

    from satchel.stores.redis import RedisStore

    with own_cluster() as nodes:
        store = RedisStore.from_url(f"redis+cluster://{HOST}:{nodes[0].port}", timeout=0.5)
        client = store.client  # a user's own commands on it: no breaker in the way
        try:
            keys = {}
            for number in range(200):
                keys.setdefault(client.get_node_from_key(f"k{number}").port, f"k{number}")
            assert len(keys) == len(nodes)
            for node in nodes:
                node.pause()
            try:
                for key in keys.values():  # a failure on every node
                    with pytest.raises((RedisError, RedisClusterException)):
                        client.get(key)
            finally:
                for node in nodes:
                    node.go_on()
            for key in keys.values():
                assert client.get(key) is None
            client.nodes_manager.initialize()  # a refresh passes
        finally:
            store.close()


def test_a_bounded_cluster_built_as_the_docs_say_bounds_a_store_of_your_own() -> None:
    """The README's form for a cluster client of your own: ``BoundedCluster.from_url(url,
    bound=t)`` in a ``RedisStore``; a command on hung nodes ends within about the bound."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from satchel.errors import StoreUnavailable
    from satchel.stores.redis import RedisStore
    from satchel.stores.redis.deadline import BoundedCluster

    clock = FakeClock()
    with own_cluster() as nodes:
        client = BoundedCluster.from_url(f"redis://{HOST}:{nodes[0].port}", bound=TIMEOUT,
                                         socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
                                         retry=Retry(NoBackoff(), 0))
        store = RedisStore(client, prefix="bounded:", clock=clock)
        try:
            store.create(KEY, make_record(clock, a=b"1"))
            for node in nodes:
                node.pause()
            try:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    store.load(KEY)
                took = time.monotonic() - started
            finally:
                for node in nodes:
                    node.go_on()
            print(f"\nyour own BoundedCluster, every node hung: {took:.3f} s (bound {TIMEOUT} s)")
            assert took < 2.5 * TIMEOUT, took  # unbounded: (1 + nodes) x the timeout
            loaded = store.load(KEY)
            assert loaded is not None and loaded.fields == {"a": b"1"}
        finally:
            client.close()


def test_a_bounded_cluster_built_without_a_url_is_refused_with_the_way_to_build_it() -> None:
    need_module("redis")
    from satchel.stores.redis.deadline import BoundedCluster

    with pytest.raises(TypeError, match=r"BoundedCluster\.from_url\(url, bound=\.\.\.\)"):
        BoundedCluster(host=HOST, port=6379, bound=1.0)
