"""MemoryStore: records in a dict, for tests and single-process development.

Everything is lost when the process ends, and processes do not share it.
Expired records are dropped when read, or by :meth:`purge_expired`.
"""

from __future__ import annotations

import threading

from satchel.lifetime import Clock, system_clock
from satchel.store import Patch, Record, Updated, apply_patch


class MemoryStore:
    """A thread-safe in-process store.

    >>> store = MemoryStore()
    >>> store.load("missing") is None
    True
    """

    def __init__(self, *, clock: Clock = system_clock) -> None:
        self._records: dict[str, Record] = {}
        self._locks: dict[str, tuple[str, float]] = {}  # lock key -> (token, lease's end)
        self._lock = threading.Lock()
        self._clock = clock

    def _live(self, key: str) -> Record | None:
        record = self._records.get(key)
        if record is not None and record.expires_at <= self._clock():
            del self._records[key]
            return None
        return record

    def load(self, key: str) -> Record | None:
        with self._lock:
            record = self._live(key)
            return None if record is None else _copy(record)

    def create(self, key: str, record: Record) -> None:
        with self._lock:
            if self._live(key) is not None:
                raise KeyError("a session with this key exists")
            self._records[key] = _copy(record)

    def update(self, key: str, patch: Patch) -> Updated:
        with self._lock:
            record = self._live(key)
            if record is None:
                return Updated.GONE
            outcome = apply_patch(record, patch)
            if outcome is Updated.EMPTIED:
                del self._records[key]
            return outcome

    def delete(self, key: str) -> None:
        with self._lock:
            self._records.pop(key, None)

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
                del self._records[key]
            for key in [k for k, (_, end) in self._locks.items() if end <= now]:
                del self._locks[key]  # locks whose holder never released them
            return len(dead)

    def count_expired(self) -> int:
        with self._lock:
            now = self._clock()
            return sum(1 for record in self._records.values() if record.expires_at <= now)

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def __repr__(self) -> str:
        return f"<MemoryStore records={len(self._records)}>"


def _copy(record: Record) -> Record:
    """A copy no caller can change the stored record through (values are bytes)."""
    return Record(dict(record.fields), record.created_at, record.last_seen, record.expires_at,
                  record.permanent, record.user)
