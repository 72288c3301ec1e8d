"""What satchel does across ``os.fork()``: the locks a fork waits for, so that a forked
child (``gunicorn --preload``) never inherits one held, and the state a child replaces on
first use (:func:`adopt`).

``os.fork()`` copies the process with only the thread that called it. A lock that another
thread held at that moment is copied held, and no thread of the child will ever let it go:
the child's first call that takes it waits forever (a worker that hangs on its first
request, say while a probe of the parent's breaker was ending). Giving the child a new lock
instead would let it carry on from state that thread was halfway through changing: a silent
wrong result, worse than the hang.

So each of satchel's locks that a child may need is registered with :func:`hold_across_forks`,
and a fork (``os.register_at_fork``'s ``before`` hook) waits until each is free and holds it
across the fork; right after, the parent and the child each let it go. The child starts with
those locks free and what they guard between two changes. CPython does the same for its
import lock. A registered lock must be held only for short sections (at most a store's
timeout), which take no other registered lock and never fork.

A lock still held after :data:`WAIT` seconds (all registered locks together) is left as it
is: the fork goes on, and a warning on the ``satchel`` logger names the lock's owner. The
child may then hang on that lock, as it would without this module. Only ``os.fork()`` (and
``subprocess`` with a ``preexec_fn``) runs the hooks: ``subprocess`` otherwise, and
``multiprocessing``'s spawn, never wait here.

Some state a child must not use at all: a connection's socket, which the parent and every
other child share (two processes talking over one connection read each other's answers:
libpq's docs warn of it, "Connecting to the database server"), an SQLite connection
(https://sqlite.org/howtocorrupt.html 2.6), a lock file's descriptor. An object that keeps
such state records the process it was made in (:func:`process_id`) and, on its first use in
another process, replaces it with :func:`adopt`. Several threads of a child may make that
first use at once; replaced twice, one thread's replacement would drop what another's had
begun to use. So the replacement runs once, in the first thread, while the others wait, and
the new process is recorded last: a thread that finds it recorded finds the state replaced.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable
from time import monotonic
from typing import Protocol

log = logging.getLogger("satchel")

WAIT = 10.0
"""Seconds a fork waits, in all, for the registered locks to be free."""


class _Lock(Protocol):
    def acquire(self, blocking: bool = ..., timeout: float = ...) -> bool: ...

    def release(self) -> None: ...


# Each registered lock -> its owner's name. Weakly: a lock (and so its owner, which the lock
# does not reference) is not kept alive by being registered. Keyed by the lock's identity.
_LOCKS: weakref.WeakKeyDictionary[_Lock, str] = weakref.WeakKeyDictionary()
_held: list[_Lock] = []  # the locks the running fork took, to let go after it


def hold_across_forks(lock: _Lock, owner: str) -> None:
    """Make every ``os.fork()`` from now on wait for ``lock`` to be free and hold it across the
    fork, while ``lock`` lives (it is referenced weakly). ``owner`` names what the lock
    guards in the warning logged if a fork gives up waiting for it (no secrets: it is logged).
    ``lock`` is a ``threading.Lock`` or ``RLock``; registering one again changes its name.
    """
    _LOCKS[lock] = owner


def _before() -> None:
    deadline = monotonic() + WAIT
    for lock, owner in list(_LOCKS.items()):
        if lock.acquire(timeout=max(0.0, deadline - monotonic())):
            _held.append(lock)
        else:
            log.warning("fork: a lock of %s was still held when the fork had waited %g s for"
                        " satchel's locks; the forked process may hang when it takes it",
                        owner, WAIT)


def _after() -> None:
    while _held:
        _held.pop().release()


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX system
    os.register_at_fork(before=_before, after_in_parent=_after, after_in_child=_after)


_ADOPTING = [threading.RLock()]  # a new one in each child: a parent's thread may hold it


def _in_child() -> None:
    _ADOPTING[0] = threading.RLock()


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX system
    os.register_at_fork(after_in_child=_in_child)


def process_id() -> int:
    """This process's id: ``os.getpid()``, asked every time (a system call, about 0.2 µs).

    Not a value kept up to date by an at-fork hook: a server that forks with C's
    ``fork()`` runs no Python hook in its workers (uWSGI by default, without
    ``py-call-osafterfork``), and a child that took its parent's id for its own would
    use the parent's connections. redis-py checks ``os.getpid()`` the same way."""
    return os.getpid()


class Owned(Protocol):
    """An object whose state belongs to the process ``_pid``."""

    _pid: int


def adopt(owner: Owned, replace: Callable[[], None]) -> None:
    """Make ``owner``'s state this process's: call ``replace()``, then record this process
    as ``owner._pid``, unless another thread of this process has done so meanwhile (it
    waits for that thread). Call it when ``owner._pid != process_id()``. ``replace`` must
    not wait for other threads; what it raises is raised, and ``owner`` is left unadopted
    (the next use tries again)."""
    with _ADOPTING[0]:
        pid = os.getpid()
        if owner._pid != pid:
            replace()
            owner._pid = pid
