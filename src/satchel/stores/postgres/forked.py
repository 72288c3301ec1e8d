"""A PostgresStore's pool in a forked child: one of the child's own, never the parent's.

A server that forks its workers from a loaded app (``gunicorn --preload``) builds the store,
and opens its pool, in the parent. Each child inherits the pool's connections, whose
sockets the parent and every other child share. Used from two processes, one connection
carries both processes' queries and each reads whichever answer comes first: another
session's row, a protocol error, or a connection the server closes (libpq's docs:
"Connecting to the database server" warns against using a connection across ``fork``;
psycopg's: a pool must be created after the fork).

So a store records the process that built it, and on its first use in another process
(:func:`satchel.forks.adopt`, once, whatever the child's threads):

- a store built by ``PostgresStore.from_url`` takes a new pool for its URL in the child
  (shared by the child's stores of that URL, as in any process); the parent's pool and its
  connections are left as they are, referenced and never closed, so nothing the child does
  reaches the parent's sockets;
- a store around a pool of your own raises :class:`~satchel.errors.ConfigError` on every
  call in the child if that pool was open at the fork: satchel cannot build your pool anew,
  and must not use its connections. Open the pool after the fork (``open=False``, then
  ``pool.open()`` in the worker, e.g. gunicorn's ``post_fork``), or build the store with
  ``from_url``. A store built in the child around a pool the parent had opened raises it
  at once, when the pool's worker threads show it (psycopg_pool starts them when the pool
  opens, and a child has none of its parent's threads). After a fork that ran no Python
  at-fork hook (uWSGI without ``py-call-osafterfork``) neither can be told: open your pool
  in the process that uses it.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from psycopg_pool import ConnectionPool

from satchel.errors import ConfigError
from satchel.forks import adopt, process_id
from satchel.resources import Lease
from satchel.stores.postgres.pools import where
from satchel.stores.postgres.sent import Statement

# Stores around a pool of the user's own: a fork records whether each one's pool was open.
_OWN_POOLS: weakref.WeakSet[PoolPerProcess] = weakref.WeakSet()


class PoolPerProcess:
    """The ``pool`` property of ``PostgresStore``: the store's pool, the process's own."""

    _pool: ConnectionPool[Any]
    _pid: int  # the process whose pool _pool is
    _lease: Lease[ConnectionPool[Any]] | None  # from_url's share of its pool
    _relet: Callable[[], Lease[ConnectionPool[Any]]] | None  # a new share, in a child
    _open_at_fork: bool  # a pool of the user's own was open at the last fork
    _where: str
    _cursors: dict[int, Any]
    _prefetch: Statement

    def _set_pool(self, pool: ConnectionPool[Any]) -> None:
        """Use ``pool``, in this process (called by ``__init__``); ConfigError if it was
        opened in another one."""
        if opened_elsewhere(pool):
            raise ConfigError(f"PostgresStore {where(pool)}: {_ELSEWHERE}")
        self._pool = pool
        self._pid = process_id()
        self._lease = self._relet = None
        self._open_at_fork = False
        _OWN_POOLS.add(self)  # until from_url says the pool is satchel's

    def _lent(self, lease: Lease[ConnectionPool[Any]],
              relet: Callable[[], Lease[ConnectionPool[Any]]]) -> None:
        """The pool is ``lease``'s, from :data:`satchel.resources.shared`; ``relet()`` takes
        a new lease on a pool of the same shape (in a forked child, a new pool)."""
        self._lease, self._relet = lease, relet
        _OWN_POOLS.discard(self)

    @property
    def pool(self) -> ConnectionPool[Any]:
        """The store's connection pool, this process's (see :mod:`this module's rules
        <satchel.stores.postgres.forked>` for a forked child). Raises
        :class:`~satchel.errors.ConfigError` in a child whose parent had the store's pool
        (one of your own) open when it forked."""
        if self._pid != process_id():
            adopt(self, self._in_child)
        return self._pool

    def _in_child(self) -> None:
        if self._relet is None:
            if self._open_at_fork or opened_elsewhere(self._pool):
                raise ConfigError(f"PostgresStore {self._where}: {_ELSEWHERE}")
        else:
            self._lease = self._relet()  # the parent's lease stays the parent's: not released
            self._pool = self._lease.resource
        self._cursors.clear()
        self._prefetch.forget_all()  # prepared on the parent's connections, not on these


_ELSEWHERE = ("its pool was opened in a process this one was forked from, and a connection"
              " cannot serve two processes (their queries would read each other's answers)."
              " Open the pool after the fork (open=False, then pool.open() in each worker,"
              " e.g. in gunicorn's post_fork), or build the store with"
              " PostgresStore.from_url, which opens a pool in each process")


def opened_elsewhere(pool: ConnectionPool[Any]) -> bool:
    """True if ``pool`` is open and none of its worker threads runs in this process: it was
    opened in a process this one was forked from. False when that cannot be told (a
    psycopg_pool without ``_workers``, a fork that ran no Python hook)."""
    workers = getattr(pool, "_workers", None)
    if pool.closed or not isinstance(workers, list) or not workers:
        return False
    return not any(isinstance(worker, threading.Thread) and worker.is_alive()
                   for worker in workers)


def _before_fork() -> None:
    for store in list(_OWN_POOLS):
        store._open_at_fork = not store._pool.closed


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX system
    os.register_at_fork(before=_before_fork)
