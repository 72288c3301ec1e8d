"""A fork waits for satchel's locks (satchel.forks): a lock another thread of the parent holds
at the fork is let go first, so the child gets it free, and gets what it guards with that
thread's change done, never half done. Real forks, real threads.

Each test forks while a thread of the parent holds a lock, in the middle of a change it makes
under the lock. Without the wait, the child hangs on the lock (the test reports "hung")."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from satchel import MemoryStore, forks
from satchel.breaker import Breaker
from satchel.forks import hold_across_forks
from satchel.store import Patch, Updated
from tests.clock import FakeClock
from tests.services import cannot_test, need_module
from tests.stores.contract import make_record
from tests.stores.forks import in_child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")

HELD = 0.3  # seconds a thread of the parent holds a lock after the fork has begun to wait


@contextmanager
def changing_under(lock: threading.Lock, change: Callable[[], None]) -> Iterator[None]:
    """A thread takes ``lock``, and keeps it while the body runs (a fork, say) and for
    :data:`HELD` seconds more, then runs ``change()`` and lets the lock go: a change that a
    fork made meanwhile finds half done. Waits for the thread on the way out."""
    taken = threading.Event()

    def hold() -> None:
        with lock:
            taken.set()
            time.sleep(HELD)
            change()

    thread = threading.Thread(target=hold)
    thread.start()
    taken.wait()
    try:
        yield
    finally:
        thread.join()


def free(lock: threading.Lock) -> bool:
    """Whether ``lock`` can be taken within a second (it is let go then)."""
    if not lock.acquire(timeout=1.0):
        return False
    lock.release()
    return True


def test_a_fork_waits_for_a_registered_lock_and_the_child_sees_the_change_done() -> None:
    lock = threading.Lock()
    hold_across_forks(lock, "a test")
    state = {"done": False}
    with changing_under(lock, lambda: state.update(done=True)):
        assert not state["done"]
        code = in_child(lambda: 0 if free(lock) and state["done"] else 2)
    assert code == 0
    assert free(lock)  # the parent let it go after the fork too


def test_an_unregistered_lock_is_not_waited_for() -> None:
    lock = threading.Lock()  # the check that the tests above can fail: this child hangs
    with changing_under(lock, lambda: None):
        assert in_child(lambda: 0 if free(lock) else 2, seconds=5) == 2


def test_a_lock_held_past_the_wait_is_left_held_and_logged(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(forks, "WAIT", 0.1)
    lock, other = threading.Lock(), threading.Lock()
    hold_across_forks(lock, "a stuck test")
    hold_across_forks(other, "a free test")
    go = threading.Event()

    def stuck() -> None:
        with lock:
            go.wait()

    thread = threading.Thread(target=stuck)
    thread.start()
    try:
        while not lock.locked():
            time.sleep(0.001)
        with caplog.at_level(logging.WARNING, logger="satchel"):
            assert in_child(lambda: 0 if free(other) and not free(lock) else 2) == 0
        assert lock.locked()  # still the stuck thread's: the fork did not let it go
        assert free(other)
        assert [r.getMessage() for r in caplog.records] == [
            "fork: a lock of a stuck test was still held when the fork had waited 0.1 s for"
            " satchel's locks; the forked process may hang when it takes it"]
    finally:
        go.set()
        thread.join()


def test_a_registered_lock_is_not_kept_alive_by_the_registry() -> None:
    lock = threading.Lock()
    hold_across_forks(lock, "a test")
    gone = weakref.ref(lock)
    del lock
    gc.collect()
    assert gone() is None


def test_a_memory_store_in_a_child_has_the_write_a_parent_thread_was_making() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    record = make_record(clock, cart=b"[1]")

    def create() -> None:  # the body of create(), which runs under the lock
        store._records["k"] = record

    with changing_under(store._lock, create):
        code = in_child(lambda: 0 if (found := store.load("k")) is not None
                        and found.fields == {"cart": b"[1]"} else 2)
    assert code == 0
    assert store.update("k", Patch(set={"n": b"1"})) is Updated.KEPT  # the parent goes on


def test_a_breaker_in_a_child_can_be_tripped_and_entered() -> None:
    breaker = Breaker("a test store")
    breaker.trip("refused")

    def child() -> int:
        breaker.trip("refused again")  # takes the lock
        breaker.enter(lambda: None)  # a probe that passes: closes it
        return 0 if not breaker.down else 2

    with changing_under(breaker._lock, lambda: None):
        assert in_child(child) == 0
    assert breaker.down  # the child's probe closed the child's breaker, not the parent's


def test_a_lazy_cluster_in_a_child_has_the_client_a_parent_thread_was_building() -> None:
    need_module("redis")
    from satchel.stores.redis.clients import LazyCluster

    built = object()
    lazy = LazyCluster(lambda: built, {})  # type: ignore[arg-type,return-value]
    building = threading.Event()

    def slow_build() -> object:
        building.set()
        time.sleep(HELD)
        return built

    lazy._build = slow_build  # type: ignore[assignment]
    thread = threading.Thread(target=lazy.cluster)
    thread.start()
    building.wait()
    try:
        # the child gets the parent's client: the build was waited for, not run again
        assert in_child(lambda: 0 if lazy.built is built and lazy.cluster() is built
                        else 2) == 0
    finally:
        thread.join()


def test_a_cluster_slot_map_refresh_in_a_child_runs_though_a_parent_thread_was_refreshing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    need_module("redis")
    from redis.cluster import NodesManager

    from satchel.stores.redis.deadline import BoundedCluster
    from tests.stores.redis_cluster import HOST, missing_binaries, redis_cluster

    if missing := missing_binaries():
        cannot_test(f"a Redis Cluster test needs {' and '.join(missing)} on PATH"
                    " (Debian: apt-get install redis-server redis-tools)")
    refreshing = threading.Event()
    initialize = NodesManager.initialize

    def slow_initialize(self: NodesManager, *args: object, **kwargs: object) -> None:
        refreshing.set()
        time.sleep(HELD)
        initialize(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(NodesManager, "initialize", slow_initialize)
    with redis_cluster() as ports:
        client = BoundedCluster.from_url(f"redis://{HOST}:{ports[0]}", bound=5.0)
        try:
            refreshing.clear()
            manager = client.nodes_manager
            thread = threading.Thread(target=manager.initialize)  # the refresh, under its lock
            thread.start()
            refreshing.wait()
            try:
                def child() -> int:
                    manager.initialize()  # without the wait: hangs on the parent's lock
                    return 0 if client.ping() else 2

                assert in_child(child) == 0
            finally:
                thread.join()
        finally:
            client.close()
