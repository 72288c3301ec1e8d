"""Session locks: requests on one session run one at a time (opt-in, ``@session_lock``).

Per-key merge keeps parallel writes of *different* keys; two requests that
read, change and write back the *same* key (a counter, a cart kept in one
key) still lose one of the changes. A session lock closes that race, the
way PHP's file sessions and Laravel's ``Route::block()`` do: the lock is
taken before the session is loaded and released after its commit.

The lock is a lease in the store (:class:`~satchel.store.Lockable`), taken
with a random token and freed only by that token, under a key derived from
the session's storage key (:func:`lock_key`), never from its id. A holder
that crashes leaves a lock that frees itself when its lease runs out. A
request that cannot take the lock within its wait gets
:class:`~satchel.errors.SessionLocked`, never a silent run without it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from satchel.errors import ConfigError, SessionLocked, StoreUnavailable
from satchel.ids import fingerprint
from satchel.store import Lockable

DEFAULT_WAIT = 10.0
"""Seconds a request waits for its session's lock (Laravel's ``block()`` waits 10)."""
DEFAULT_LEASE = 30.0
"""Seconds a lock lives unless released: gunicorn's default worker timeout, after which a
stuck worker is killed and its lock must free itself."""
_FIRST_PAUSE = 0.002  # seconds between tries: doubled up to _LAST_PAUSE, with jitter
_LAST_PAUSE = 0.05
log = logging.getLogger("satchel")


@dataclass(frozen=True)
class LockSpec:
    """How a view locks its session: ``wait`` and ``lease`` in seconds."""

    wait: float = DEFAULT_WAIT
    lease: float = DEFAULT_LEASE

    def __post_init__(self) -> None:
        for name in ("wait", "lease"):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value < 0):
                raise ConfigError(f"@session_lock({name}={value!r}): give a finite number of"
                                  " seconds, 0 or more, e.g. session_lock(wait=5, lease=30)")
        if self.lease <= 0:
            raise ConfigError(f"@session_lock(lease={self.lease!r}): a lease must be longer than"
                              " 0 s; give the longest time the view may take, e.g. lease=30")


def lock_key(storage_key: str) -> str:
    """The lock key of the session stored under ``storage_key`` (hex SHA-256)."""
    return hashlib.sha256(b"satchel-lock:" + storage_key.encode()).hexdigest()


class HeldLock:
    """A session lock this request holds; :meth:`release` frees it (once)."""

    __slots__ = ("_key", "_store", "_token", "fingerprint")

    def __init__(self, store: Lockable, key: str, token: str, tag: str) -> None:
        self._store, self._key, self._token = store, key, token
        self.fingerprint = tag

    def release(self) -> None:
        """Free the lock. Never raises: a lock left behind frees itself after its lease.

        Logs a warning if the lease ran out first (the view ran longer than its
        lease, so another request may have run beside it: give a longer lease).
        """
        store, self._store = self._store, None  # type: ignore[assignment]
        if store is None:
            return
        try:
            freed = store.release_lock(self._key, self._token)
        except StoreUnavailable as err:
            log.warning("session %s: its lock could not be released (%s); it frees itself"
                        " when its lease runs out", self.fingerprint, err)
            return
        if not freed:
            log.warning("session %s: the request outlived its lock's lease, so another"
                        " request on the session may have run beside it; give @session_lock"
                        " a longer lease=", self.fingerprint)

    def __repr__(self) -> str:
        return f"<HeldLock session={self.fingerprint}>"


def acquire(store: object, storage_key: str, spec: LockSpec, *, tag: str | None = None,
            monotonic: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> HeldLock:
    """Take the lock of the session stored under ``storage_key``, waiting up to ``spec.wait``
    seconds (tries with growing pauses of 2-50 ms; ``wait=0`` tries once).

    ``tag`` names the session in log lines and errors (the ``ids.fingerprint`` of its id;
    by default, of ``storage_key``). Raises :class:`SessionLocked` when the wait runs
    out, :class:`ConfigError` if ``store`` cannot lock, :class:`StoreUnavailable` from
    the store.
    """
    if not isinstance(store, Lockable):
        raise ConfigError(f"@session_lock: {store!r} cannot lock sessions (it has no"
                          " acquire_lock/release_lock, see satchel.store.Lockable); use a"
                          " satchel store (memory, sqlite, redis, postgresql)")
    key, token = lock_key(storage_key), secrets.token_hex(16)
    tag = tag or fingerprint(storage_key)
    start = monotonic()
    deadline = start + spec.wait
    pause = _FIRST_PAUSE
    while not store.acquire_lock(key, token, spec.lease):
        left = deadline - monotonic()
        if left <= 0:
            log.warning("session %s: its lock stayed held for the whole wait (%g s); the"
                        " request gets 503", tag, spec.wait)
            raise SessionLocked(spec.wait, tag)
        sleep(min(left, pause * random.uniform(0.5, 1.0)))  # noqa: S311 - jitter, not a secret
        pause = min(pause * 2, _LAST_PAUSE)
    return HeldLock(store, key, token, tag)
