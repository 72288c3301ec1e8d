"""The process an SQLite store's state belongs to, and replacing that state, once, in a
forked child.

A store keeps state that a forked child (``gunicorn --preload``) must not use: its SQLite
connections (SQLite forbids using one across a fork:
https://sqlite.org/howtocorrupt.html 2.6), the descriptor of its lock file (whose lock is
the parent's), and thread locks that a thread of the parent's may have held at the fork (the
child does not have that thread to release them). Each object that keeps such state records
the process it was made in, and on its first use in another process replaces it
(:func:`adopt`).

Several threads of a child may make that first use at once. Replaced twice, one thread's
replacement would drop the state another thread had begun to use: a lock taken on a lock
file the second replacement forgot is never released, and every later write, in the child
and in the other processes, waits for it until its busy timeout. So the replacement runs
once, in the first thread, while the others wait for it, and the new process is recorded
last: a thread that finds it recorded finds the state replaced.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Protocol

_PID = [os.getpid()]  # this process's id, kept up to date in a forked child
_ADOPTING = [threading.RLock()]  # a new one in each child: a parent's thread may hold it


def _in_child() -> None:
    _PID[0] = os.getpid()
    _ADOPTING[0] = threading.RLock()


if hasattr(os, "register_at_fork"):  # pragma: no branch - every POSIX system
    os.register_at_fork(after_in_child=_in_child)


def process_id() -> int:
    """This process's id (``os.getpid()``, kept up to date across ``fork`` without a
    system call per use)."""
    return _PID[0]


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
        if owner._pid != _PID[0]:
            replace()
            owner._pid = _PID[0]
