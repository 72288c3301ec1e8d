"""Work in a forked child (``gunicorn --preload``), for the SQLite store's tests."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable

from satchel.store import Patch
from satchel.stores.sqlite import SQLiteStore


def update_in_child(store: SQLiteStore, key: str, patch: Patch,
                    seconds: float = 10.0) -> int | str:
    """``store.update(key, patch)`` in a child forked now: its exit code (0: the session was
    updated, 2: it was gone, 1: the update raised), or "hung" if it had not ended within
    ``seconds`` (it is then killed)."""
    return in_child(lambda: 0 if store.update(key, patch) else 2, seconds)


def in_child(call: Callable[[], int], seconds: float = 10.0) -> int | str:
    """``call()`` in a child forked now: its exit code (what ``call`` returned, 1 if it
    raised), or "hung" if it had not ended within ``seconds`` (it is then killed)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads running
        child = os.fork()
    if child == 0:  # pragma: no cover - the child's coverage is not collected
        try:
            code = call()
        except BaseException:
            os._exit(1)
        os._exit(code)
    deadline = time.monotonic() + seconds
    while True:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(child, 9)
            os.waitpid(child, 0)
            return "hung"
        time.sleep(0.002)
