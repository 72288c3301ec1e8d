"""Locks a forked child (``gunicorn --preload``) makes anew.

A thread of the parent's may hold a lock at the moment of the fork. The child gets a copy of
the lock, held, but not the thread that would let it go, so its first thread to take it
waits forever. An object whose lock a child may need registers it with :func:`fresh_in_child`;
right after a fork, in the child (before it has other threads), each registered lock is
replaced by a new one. What the lock guarded is copied as it was at the fork: the owner must
be able to use that state in the child (a breaker's probe of the parent's is recognised by its
process id, say). Python's own ``logging`` module does the same with its handlers' locks.
"""

from __future__ import annotations

import os
import threading
import weakref

_OWNERS: weakref.WeakKeyDictionary[object, tuple[str, ...]] = weakref.WeakKeyDictionary()


def fresh_in_child(owner: object, *names: str) -> None:
    """Give ``owner`` a new ``threading.Lock`` for each attribute in ``names`` in every child
    forked from now on (while ``owner`` lives: it is referenced weakly, so it must accept weak
    references). Calling it again replaces the names."""
    _OWNERS[owner] = names


def _in_child() -> None:
    for owner, names in list(_OWNERS.items()):
        for name in names:
            setattr(owner, name, threading.Lock())


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX system
    os.register_at_fork(after_in_child=_in_child)
