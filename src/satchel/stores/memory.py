"""MemoryStore: records in a dict, for tests and single-process development.

Everything is lost when the process ends, and processes do not share it.
An expired record reads as missing but stays, so that :meth:`~MemoryStore.expired` can
tell it from one that never was (:class:`~satchel.store.ExpiredLookup`), until it is
deleted (the engine deletes one it finds), replaced by a create under its key, or purged
(:meth:`~MemoryStore.purge_expired`). A dict
user -> set of storage keys, kept under the same lock as the records, finds a
user's sessions (:class:`~satchel.store.UserIndex`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from satchel.forks import hold_across_forks
from satchel.lifetime import Clock, system_clock
from satchel.store import (
    BOOKKEEPING,
    DEVICE_MAX,
    Patch,
    Record,
    SessionInfo,
    StoreStats,
    Updated,
    apply_patch,
)


class MemoryStore:
    """A thread-safe in-process store.

    >>> store = MemoryStore()
    >>> store.load("missing") is None
    True
    """

    def __init__(self, *, clock: Clock = system_clock) -> None:
        self._records: dict[str, Record] = {}
        self._users: dict[str, set[str]] = {}  # user -> storage keys of its records
        self._locks: dict[str, tuple[str, float]] = {}  # lock key -> (token, lease's end)
        self._lock = threading.Lock()
        hold_across_forks(self._lock, "a MemoryStore")  # a child must get it free
        self._clock = clock

    def _live(self, key: str) -> Record | None:
        """The record under ``key`` if it is live (an expired one stays: see the module)."""
        record = self._records.get(key)
        return record if record is not None and record.expires_at > self._clock() else None

    def _drop(self, key: str) -> None:
        """Remove the record under ``key`` (present) and its index entry."""
        self._unindex(key, self._records.pop(key).user)

    def _unindex(self, key: str, user: str | None) -> None:
        if user is not None:
            keys = self._users.get(user)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._users[user]

    def load(self, key: str) -> Record | None:
        with self._lock:
            record = self._live(key)
            return None if record is None else _copy(record)

    def create(self, key: str, record: Record) -> None:
        with self._lock:
            if key in self._records:
                if self._live(key) is not None:
                    raise KeyError("a session with this key exists")
                self._drop(key)  # expired: replaced
            self._records[key] = stored = _copy(record)
            if stored.device is not None:
                stored.device = stored.device[:DEVICE_MAX]
            if stored.user is not None:
                self._users.setdefault(stored.user, set()).add(key)

    def update(self, key: str, patch: Patch) -> Updated:
        with self._lock:
            record = self._live(key)
            if record is None:
                return Updated.GONE
            user = record.user
            outcome = apply_patch(record, patch)
            if outcome is Updated.EMPTIED:
                self._records.pop(key)
                self._unindex(key, user)
            elif record.user != user:
                self._unindex(key, user)
                if record.user is not None:
                    self._users.setdefault(record.user, set()).add(key)
            return outcome

    def delete(self, key: str) -> None:
        with self._lock:
            if key in self._records:
                self._drop(key)

    def expired(self, key: str) -> SessionInfo | None:
        with self._lock:
            record = self._records.get(key)
            if record is None or record.expires_at > self._clock():
                return None
            return _info(key, record)

    def acquire_lock(self, key: str, token: str, lease: float) -> bool:
        with self._lock:
            now = self._clock()
            held = self._locks.get(key)
            if held is not None and held[1] > now:
                return False
            self._locks[key] = (token, now + lease)
            return True

    def release_lock(self, key: str, token: str) -> bool:
        with self._lock:
            held = self._locks.get(key)
            if held is None or held[0] != token:
                return False
            del self._locks[key]
            return True

    def purge_expired(self, batch: int = 1000) -> int:
        with self._lock:
            now = self._clock()
            dead = [k for k, r in self._records.items() if r.expires_at <= now][:batch]
            for key in dead:
                self._drop(key)
            for key in [k for k, (_, end) in self._locks.items() if end <= now]:
                del self._locks[key]  # locks whose holder never released them
            return len(dead)

    def count_expired(self) -> int:
        with self._lock:
            now = self._clock()
            return sum(1 for record in self._records.values() if record.expires_at <= now)

    def sessions_of(self, user: str) -> list[SessionInfo]:
        with self._lock:
            found = [(key, record) for key in list(self._users.get(user, ()))
                     if (record := self._live(key)) is not None]
        return sorted((_info(key, record) for key, record in found),
                      key=lambda info: (info.created_at, info.key))

    def delete_user(self, user: str, keep: str | None = None) -> list[str]:
        with self._lock:
            deleted = [key for key in list(self._users.get(user, ()))
                       if key != keep and self._live(key) is not None]
            for key in deleted:
                self._drop(key)
            return deleted

    def stats(self) -> StoreStats:
        with self._lock:
            now = self._clock()
            live = [record for record in self._records.values()
                    if record.expires_at > now and record.device != BOOKKEEPING]
        return StoreStats(len(live), len({r.user for r in live if r.user is not None}))

    def all_sessions(self) -> Iterator[SessionInfo]:
        """Every live session's metadata, as of the call (a copy taken under the lock)."""
        with self._lock:
            now = self._clock()
            infos = [_info(key, record) for key, record in self._records.items()
                     if record.expires_at > now and record.device != BOOKKEEPING]
        return iter(infos)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __repr__(self) -> str:
        return f"<MemoryStore records={len(self._records)}>"


def _copy(record: Record) -> Record:
    """A copy no caller can change the stored record through (values are bytes)."""
    return Record(dict(record.fields), record.created_at, record.last_seen, record.expires_at,
                  record.permanent, record.user, record.device)


def _info(key: str, record: Record) -> SessionInfo:
    return SessionInfo(key, record.created_at, record.last_seen, record.expires_at,
                       record.user, record.device, record.permanent)
