"""Pools and clients built from URLs: one per URL per process, closed by their last user or at exit.

A store built from a URL (``PostgresStore.from_url``, ``RedisStore.from_url``, so every
``SATCHEL_STORE`` URL) takes its connection pool or client from :data:`shared` instead of
building its own. Stores built from the same URL with the same pool options get the same one,
so a process that builds an app per test (Flask's own suite does) holds one pool per URL, not
one per app, whether or not anything closes the stores.

A pool is closed by the :meth:`Lease.release` of the last store still using it (a store's
``close()``), or at interpreter exit (``atexit``), always on the thread that calls it; never by
the garbage collector. That is the point: psycopg_pool's ``ConnectionPool.__del__`` joins the
pool's threads, and it may run on one of them (a worker holds the pool while it runs a task,
and the collector runs wherever an allocation triggers it), which fails with "Exception ignored
in ... RuntimeError: cannot join current thread" (an error under ``-W error``); and connections
dropped with their client close only whenever the collector gets to them.
psycopg's docs describe this life cycle: one pool for the program, closed at exit with
``atexit`` ("Pool life cycle", psycopg 3 docs).

A store that is garbage-collected without ``close()`` stops counting as a user, but its pool
stays open (idle) for the next store of that URL, until exit. A store built around the user's
own pool or client never comes here, so satchel never closes what the user built.

This module's registry is process-wide state, unlike everything else in satchel: a pool serves
every app of the process, as the psycopg docs recommend. In a forked child the parent's pools
are left alone (their sockets and threads are the parent's) and new ones are built.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("satchel")


class _Entry:
    """One shared resource and the leases that use it (weakly: a dropped store stops counting)."""

    __slots__ = ("close", "leases", "resource")

    def __init__(self, resource: Any, close: Callable[[Any], None]) -> None:
        self.resource = resource
        self.close = close
        self.leases: weakref.WeakSet[Lease[Any]] = weakref.WeakSet()


class Lease(Generic[T]):
    """One store's use of a shared resource: ``resource``, and :meth:`release` when done.

    The store keeps its lease; a lease that is garbage-collected unreleased stops counting as
    a user without closing anything.
    """

    __slots__ = ("__weakref__", "_entry", "_key", "_registry", "resource")

    def __init__(self, registry: SharedResources, key: Hashable, entry: _Entry) -> None:
        self._registry, self._key, self._entry = registry, key, entry
        self.resource: T = entry.resource

    def release(self) -> None:
        """Stop using the resource; the last live lease to release it closes it.

        Releasing twice is not an error (the second does nothing).
        """
        self._registry._release(self)

    def __repr__(self) -> str:  # the key holds the URL, which may hold a password: never shown
        return f"<Lease of {type(self.resource).__name__}>"


class SharedResources:
    """Resources (pools, clients) by key, each built once and shared by the leases on it.

    Thread-safe. ``close_all`` runs at interpreter exit for :data:`shared`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._inherited: list[_Entry] = []  # a forked child's copies of the parent's: kept, unused
        self._pid = os.getpid()  # the process the entries belong to

    def lease(self, key: Hashable, build: Callable[[], T], close: Callable[[T], None], *,
              usable: Callable[[T], bool] = lambda resource: True) -> Lease[T]:
        """A lease on the resource under ``key``; ``build()`` makes it if there is none.

        ``key`` must name everything that shapes the resource (the URL, pool sizes,
        timeouts), and nothing that does not (a table name, a key prefix), so stores that can
        share, do. ``close(resource)`` is called by the last release, or at exit. A resource
        that is no longer ``usable`` (e.g. a pool someone closed by hand) is replaced by a new
        one for this and later leases. ``build``'s errors propagate; nothing is kept then.
        ``build`` runs outside the lock (it may connect); if two threads build for one key at
        once, the second's resource is closed and it shares the first's. In a forked child
        the parent's resources are never leased (:meth:`forget_all`), even after a fork that
        ran no at-fork hook.
        """
        if self._pid != os.getpid():
            self.forget_all()
        with self._lock:
            entry = self._take(key, usable)
            if entry is not None:
                return self._new_lease(key, entry)
        built = build()
        with self._lock:
            entry = self._take(key, usable)
            spare = entry is not None  # another thread built one meanwhile: use it
            if entry is None:
                entry = self._entries[key] = _Entry(built, close)
            lease: Lease[T] = self._new_lease(key, entry)
        if spare:
            close(built)
        return lease

    def _take(self, key: Hashable, usable: Callable[[Any], bool]) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and not usable(entry.resource):
            del self._entries[key]  # closed by hand: its own closer already ran
            return None
        return entry

    def _new_lease(self, key: Hashable, entry: _Entry) -> Lease[Any]:
        lease: Lease[Any] = Lease(self, key, entry)
        entry.leases.add(lease)
        return lease

    def _release(self, lease: Lease[Any]) -> None:
        if self._pid != os.getpid():
            self.forget_all()  # a fork that ran no hook: never close the parent's
        entry = lease._entry
        with self._lock:
            if lease not in entry.leases:
                return  # released before
            entry.leases.discard(lease)
            if entry.leases or self._entries.get(lease._key) is not entry:
                return  # still used, or no longer ours (replaced, or inherited over a fork)
            del self._entries[lease._key]
        _close(entry)

    def close_all(self) -> None:
        """Close every resource, used or not (at exit); later leases build new ones. In a
        forked child, the parent's are left alone (:meth:`forget_all`)."""
        if self._pid != os.getpid():
            self.forget_all()
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            _close(entry)

    def forget_all(self) -> None:
        """Drop every resource without closing it: after a fork, in the child, where they are
        the parent's. They are kept referenced, so the collector never closes them either."""
        self._lock = threading.Lock()  # the parent's may have been held by another thread
        self._inherited += self._entries.values()
        self._entries = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<SharedResources {len(self._entries)} open>"


def _close(entry: _Entry) -> None:
    try:
        entry.close(entry.resource)
    except Exception:  # one failing close must not keep the others open
        log.warning("closing a shared %s failed", type(entry.resource).__name__, exc_info=True)


shared = SharedResources()
"""The registry stores built from URLs use."""
atexit.register(shared.close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=shared.forget_all)
