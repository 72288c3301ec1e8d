"""Locks a forked child makes anew (satchel.forks): a lock a parent's thread held at the fork
is not held in the child, which does not have that thread to let it go. Real forks."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable

import pytest

from satchel import forks
from satchel.forks import fresh_in_child
from tests.services import need_module
from tests.stores.forks import held_by_a_thread, in_child

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")


class Owner:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.other = threading.Lock()


def free(lock: threading.Lock) -> bool:
    """Whether ``lock`` can be taken at once (then it is let go)."""
    if not lock.acquire(blocking=False):
        return False
    lock.release()
    return True


def test_a_registered_lock_is_new_and_free_in_a_child_and_only_that_one() -> None:
    owner = Owner()
    fresh_in_child(owner, "_lock")
    old = owner._lock
    with held_by_a_thread(owner._lock), held_by_a_thread(owner.other):

        def check() -> int:
            renewed = owner._lock is not old and free(owner._lock)
            return 0 if renewed and not free(owner.other) else 2

        assert in_child(check) == 0
    assert owner._lock is old  # the parent's own is left alone


def test_an_owner_is_referenced_weakly() -> None:
    owner = Owner()
    fresh_in_child(owner, "_lock")
    before = len(forks._OWNERS)
    del owner
    gc.collect()
    assert len(forks._OWNERS) == before - 1


def in_child_with(lock: threading.Lock, call: Callable[[], int]) -> int | str:
    with held_by_a_thread(lock):
        return in_child(call)


def test_a_lazy_cluster_builds_in_a_child_though_a_parent_thread_was_building() -> None:
    need_module("redis")
    from satchel.stores.redis.clients import LazyCluster

    built = object()
    lazy = LazyCluster(lambda: built, {})  # type: ignore[arg-type,return-value]
    assert in_child_with(lazy._lock, lambda: 0 if lazy.cluster() is built else 2) == 0
