"""The store contract: what every session backend does, and nothing more.

A store keeps **records** under a **storage key** (the SHA-256 of the
session id, never the id). A record is a map of field name -> bytes, one
field per session key, plus timestamps. Stores never see a request, a
cookie or the app config; times are seconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import NamedTuple, Protocol, runtime_checkable


@dataclass
class Record:
    """One session as a store keeps it.

    ``user``: who is logged in (the string form of the session's ``SATCHEL_USER_KEY`` value),
    None for an anonymous session; a :class:`UserIndex` store finds sessions by it.
    ``device``: a short description of the browser that made the session (user agent and
    client address, at most :data:`DEVICE_MAX` characters), None if not recorded.
    """

    fields: dict[str, bytes]
    created_at: float
    last_seen: float
    expires_at: float
    permanent: bool = False
    user: str | None = None
    device: str | None = None


DEVICE_MAX = 200
"""The most characters of :attr:`Record.device` a store must keep (longer ones are cut)."""

BOOKKEEPING = "\x01satchel-bookkeeping"
"""The :attr:`Record.device` of a record that is not a session but the engine's bookkeeping
(the short-lived tombstone of a rotated or emptied id, :mod:`satchel.tombstone`): an
:class:`Inventory` neither counts nor lists it. A recorded device never has a control
character, so never this value."""


class SessionInfo(NamedTuple):
    """A session's metadata, without its data: what listing a user's sessions returns."""

    key: str
    """The storage key (never the session id)."""
    created_at: float
    last_seen: float
    expires_at: float
    user: str | None
    device: str | None
    permanent: bool = False


_NO_FIELDS: Mapping[str, bytes] = MappingProxyType({})


class Patch(NamedTuple):
    """What one commit changes. Fields not named are left as they are.

    ``clear`` drops every field before ``set`` is applied. ``None`` for a
    metadata attribute means "leave it"; ``user=""`` removes the user.
    ``delete_if_empty``: if the record holds no field once the patch is
    applied, delete it (in the same atomic step), and ``update`` returns
    :attr:`Updated.EMPTIED`. The store decides from what it holds, so a field
    a parallel commit added keeps the record alive.
    Immutable (a named tuple: one commit builds one, so it must be cheap).
    """

    set: Mapping[str, bytes] = _NO_FIELDS
    delete: frozenset[str] = frozenset()
    clear: bool = False
    last_seen: float | None = None
    expires_at: float | None = None
    permanent: bool | None = None
    user: str | None = None
    delete_if_empty: bool = False


class Updated(IntEnum):
    """What :meth:`Store.update` did. ``GONE`` is falsy, the others truthy."""

    GONE = 0
    """The record is missing or expired: nothing was changed."""
    KEPT = 1
    """The patch was applied and the record is kept."""
    EMPTIED = 2
    """The patch left no field and asked ``delete_if_empty``: the record was deleted."""


@runtime_checkable
class Store(Protocol):
    """A session backend. All methods are thread-safe.

    Connection failures raise :class:`~satchel.errors.StoreUnavailable`,
    chained to the driver's error; nothing else is raised for I/O.
    """

    def load(self, key: str) -> Record | None:
        """The record under ``key``. Missing or expired (``expires_at`` <= now): None."""
        ...

    def create(self, key: str, record: Record) -> None:
        """Store a new record. Raises ``KeyError`` if a live record has ``key``;
        an expired one is replaced."""
        ...

    def update(self, key: str, patch: Patch) -> Updated:
        """Apply ``patch`` atomically, touching only the fields it names, so two
        commits that change different fields both survive.

        Returns :attr:`Updated.GONE` and changes nothing if the record is
        missing or expired: a request in flight never resurrects a session that
        was logged out. With ``patch.delete_if_empty``, a record left with no
        field is deleted in the same step and the result is
        :attr:`Updated.EMPTIED`; otherwise :attr:`Updated.KEPT`. (A store
        written for an older contract may return True/False, read as
        KEPT/GONE.)
        """
        ...

    def delete(self, key: str) -> None:
        """Remove the record. Deleting a missing key is not an error."""
        ...


@runtime_checkable
class Purgeable(Protocol):
    """A store whose expired records stay until something deletes them."""

    def purge_expired(self, batch: int = 1000) -> int:
        """Delete up to ``batch`` expired records; return how many went.

        Call until it returns 0 to empty the backlog; each call is bounded. A store may
        split a call into short transactions and pause between them (SQLite, PostgreSQL),
        so that requests writing meanwhile are not stalled behind the purge.
        """
        ...

    def count_expired(self) -> int:
        """How many expired records are waiting to be purged."""
        ...


@runtime_checkable
class ExpiredLookup(Protocol):
    """A store that keeps an expired record until it is purged or deleted, and can tell it
    from a missing one.

    The engine asks only when a cookie it signed finds no record (``load`` gave None, never
    on a hit): a record found expired is reported as ``session_expired`` with the timeout
    that ended it, then deleted; otherwise the id is unknown (a logout, a revocation). A
    store that drops records at their deadline (Redis, by TTL) cannot be one.
    """

    def expired(self, key: str) -> SessionInfo | None:
        """The metadata of the record under ``key`` if it is there but expired
        (``expires_at`` <= now); None if it is missing or live. Only reads (one lookup by
        key): the record stays until something deletes it."""
        ...


@runtime_checkable
class Lockable(Protocol):
    """A store that can hold a session lock: a lease on a lock key, taken by a token.

    ``key`` is a lock key (a hash the caller derives from a storage key, see
    :func:`satchel.locking.lock_key`), never a session id. Neither method waits:
    the caller polls :meth:`acquire_lock` until its own wait limit. A lock whose
    lease has run out (its holder crashed, or ran past its lease) is free.
    """

    def acquire_lock(self, key: str, token: str, lease: float) -> bool:
        """Take the lock on ``key`` for ``lease`` seconds, as ``token``, if it is free or
        its lease has run out; True if taken. False, changing nothing, if another
        token holds a live lease (the same token counts as another: locks do not nest).
        """
        ...

    def release_lock(self, key: str, token: str) -> bool:
        """Free the lock on ``key`` if ``token`` holds it; True if it did. False,
        changing nothing, if it is free or another token holds it (the lease ran out
        and someone took it): releasing never frees another holder's lock. A lease
        that ran out and was not taken since may still count as held (True), or
        have been dropped by the store already (False).
        """
        ...


@runtime_checkable
class UserIndex(Protocol):
    """A store that finds the sessions of one user (:attr:`Record.user`) without a scan.

    Kept in step with the records: a record created with a user is found by
    :meth:`sessions_of` until it is deleted or expires, and never after. The cost of
    both methods grows with that user's sessions, not with the store's.
    """

    def sessions_of(self, user: str) -> list[SessionInfo]:
        """The live (not expired, not deleted) sessions whose user is ``user``, oldest
        (``created_at``) first. An unknown user: an empty list."""
        ...

    def delete_user(self, user: str, keep: str | None = None) -> list[str]:
        """Delete every live session of ``user`` but the one under storage key ``keep``;
        return the storage keys deleted."""
        ...


class StoreStats(NamedTuple):
    """What :meth:`Inventory.stats` counts."""

    sessions: int
    """Live sessions."""
    users: int
    """Distinct users among them (anonymous sessions have none)."""


@runtime_checkable
class Inventory(Protocol):
    """A store an administrator can survey: counts, and every live session's metadata.

    Both walk the whole store (an admin command's cost, never a request's). Neither counts
    nor lists a record whose ``device`` is :data:`BOOKKEEPING` (not a session).
    """

    def stats(self) -> StoreStats:
        """Live sessions and distinct users."""
        ...

    def all_sessions(self) -> Iterator[SessionInfo]:
        """Every live session's metadata, in no set order."""
        ...


class PendingLoad(Protocol):
    """A ``load`` already sent to the store, whose answer is read when needed."""

    def result(self) -> Record | None:
        """The answer ``load`` would give (and its errors). Call at most once."""
        ...

    def cancel(self) -> None:
        """The answer is not needed: free what the load holds. Never raises."""
        ...


@runtime_checkable
class Prefetching(Protocol):
    """A store that can start a load before the session is used, to overlap its round trip.

    Worth it only for a store across a network; local stores load fast enough.
    """

    def prefetch(self, key: str) -> PendingLoad | None:
        """Send ``load(key)`` without waiting for the answer.

        None if it cannot be sent now (the caller then calls ``load``, which
        reports any failure). Each pending load must end with ``result()`` or
        ``cancel()``; one dropped without either closes what it held.
        """
        ...


def apply_patch(record: Record, patch: Patch) -> Updated:
    """Apply ``patch`` to ``record`` in place: the reference semantics of update.

    Returns EMPTIED if the caller must now delete the record, else KEPT.
    """
    if patch.clear:
        record.fields.clear()
    for name in patch.delete:
        record.fields.pop(name, None)
    record.fields.update(patch.set)
    if patch.last_seen is not None:
        record.last_seen = patch.last_seen
    if patch.expires_at is not None:
        record.expires_at = patch.expires_at
    if patch.permanent is not None:
        record.permanent = patch.permanent
    if patch.user is not None:
        record.user = patch.user or None
    if patch.delete_if_empty and not record.fields:
        return Updated.EMPTIED
    return Updated.KEPT
