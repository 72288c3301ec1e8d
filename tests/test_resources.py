"""What satchel opens, satchel closes: the pools, clients and connections of stores.

A store built from a URL shares its pool or client with the other stores built from that URL
(satchel.resources), so building and dropping apps leaves the server's connection count and
the process's threads flat, with nothing left for the garbage collector to close on a pool's
own thread. The counts are taken on the real servers, by name (each test's URL carries its
own ``application_name`` / ``client_name``), so other users of the servers do not disturb them.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest

from satchel.resources import SharedResources

# -- the registry ---------------------------------------------------------------------------------


class Resource:
    def __init__(self, name: str = "r") -> None:
        self.name, self.closed = name, False

    def close(self) -> None:
        self.closed = True


def close(resource: Resource) -> None:
    resource.close()


def test_leases_on_one_key_share_one_resource_which_the_last_release_closes() -> None:
    registry = SharedResources()
    first = registry.lease("k", Resource, close)
    second = registry.lease("k", Resource, close)
    other = registry.lease("other", Resource, close)
    assert first.resource is second.resource is not other.resource
    first.release()
    first.release()  # twice: the second does nothing
    assert not second.resource.closed
    second.release()
    assert second.resource.closed and not other.resource.closed
    third = registry.lease("k", Resource, close)
    assert third.resource is not second.resource and not third.resource.closed
    assert "k" not in repr(third) and "k" not in repr(registry)


def test_a_collected_lease_stops_counting_and_closes_nothing() -> None:
    registry = SharedResources()
    registry.lease("k", Resource, close)  # dropped at once, never released
    gc.collect()
    kept = registry.lease("k", Resource, close)
    assert not kept.resource.closed  # the dropped lease's resource stayed, for the next one
    registry.lease("k", Resource, close)
    gc.collect()
    kept.release()  # the last live lease
    assert kept.resource.closed
    assert len(registry) == 0


def test_an_unusable_resource_is_replaced_and_its_leases_release_nothing() -> None:
    registry = SharedResources()

    def usable(resource: Resource) -> bool:
        return not resource.closed

    old = registry.lease("k", Resource, close, usable=usable)
    old.resource.close()  # closed by hand
    new = registry.lease("k", Resource, close, usable=usable)
    assert new.resource is not old.resource
    old.release()
    assert not new.resource.closed
    new.release()
    assert new.resource.closed


def test_two_threads_building_one_key_at_once_end_up_sharing_one() -> None:
    registry = SharedResources()
    both_building = threading.Barrier(2, timeout=10)  # a build under the lock: broken
    built: list[Resource] = []

    def build() -> Resource:
        resource = Resource()
        built.append(resource)
        both_building.wait()
        return resource

    leases: list[Any] = []
    threads = [threading.Thread(target=lambda: leases.append(registry.lease("k", build, close)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 2 and leases[0].resource is leases[1].resource
    spare, = (resource for resource in built if resource is not leases[0].resource)
    assert spare.closed and not leases[0].resource.closed


def test_close_all_closes_every_resource_even_if_one_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = SharedResources()

    def fail(resource: Resource) -> None:
        raise OSError("cannot close")

    failing = registry.lease("bad", Resource, fail)
    fine = registry.lease("good", Resource, close)
    registry.close_all()
    assert fine.resource.closed and not failing.resource.closed
    assert "closing a shared Resource failed" in caplog.text
    assert registry.lease("good", Resource, close).resource is not fine.resource


def test_after_a_fork_the_child_builds_its_own_and_leaves_the_parents_alone() -> None:
    registry = SharedResources()
    parents = registry.lease("k", Resource, close)
    registry.forget_all()  # what runs in a forked child
    childs = registry.lease("k", Resource, close)
    assert childs.resource is not parents.resource
    parents.release()
    registry.close_all()
    assert childs.resource.closed and not parents.resource.closed
