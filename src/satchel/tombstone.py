"""Tombstones: what a store remembers, for a short while, of a session id that ended early.

When a request rotates a session's id (``regenerate()``, at login) or empties
it, requests still in flight may carry the old id. Without a trace of what
happened they would take the old id's absence for an unknown id, and answer
with a brand-new anonymous cookie over the login, or drop a write to a key
the emptying request never saw.

So the engine leaves a *tombstone*: an ordinary store record, filed under a
storage key that no session id maps to (:func:`key`, derived from the
session's own storage key), that lives ``grace`` seconds. Its fields are the
engine's own::

    "kind"        b"rotated" or b"emptied"
    "next"        (rotated only) the storage key of the id it was rotated to
    "f:<name>"    (rotated only) the fields the rotation left unchanged

A late request that finds a *rotated* tombstone, while the id it was rotated
to (or that id's own successor) is still live, opens the session read-only:
it sees only what the old and the new session agree on (never a key the
rotation added, changed or dropped: no login for a planted id, no privilege
a rotation took away), writes nothing and sends no cookie, so the browser
keeps the login's new cookie (session fixation: OWASP's Session Management
Cheat Sheet). Once the new id is logged out, the old one opens empty. One that
finds an *emptied* tombstone keeps its own changes in a new session. No
tombstone (logout, expiry, revocation): the request's changes are dropped.
A store needs nothing new for this: tombstones are records like any other,
and expire like them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal

from satchel.store import BOOKKEEPING, Patch, Record, Store

Kind = Literal["rotated", "emptied"]
DEFAULT_GRACE = 60.0  # seconds; SATCHEL_GRACE_PERIOD
_KIND = "kind"
_NEXT = "next"
_FIELD = "f:"
_IS_LIVE = Patch()  # an update that changes nothing: only "is it live?"


def key(storage_key: str) -> str:
    """The storage key of the tombstone of the session stored under ``storage_key``."""
    return hashlib.sha256(b"satchel-tombstone:" + storage_key.encode("ascii")).hexdigest()


def record(kind: Kind, now: float, grace: float, *, permanent: bool = False,
           fields: Mapping[str, bytes] | None = None, successor: str | None = None) -> Record:
    """A tombstone of ``kind`` living ``grace`` seconds from ``now``.

    For a rotation: ``fields`` are the session fields the rotation left
    unchanged, kept for the read-only view of late requests, and
    ``successor`` is the storage key of the new id.
    """
    kept = {_KIND: kind.encode()}
    if successor is not None:
        kept[_NEXT] = successor.encode("ascii")
    if fields:
        kept.update({_FIELD + name: value for name, value in fields.items()})
    return Record(kept, now, now, now + grace, permanent=permanent, device=BOOKKEEPING)


def successor_of(stored: Record) -> str | None:
    """The storage key a rotated tombstone points to (None for an emptied one)."""
    successor = stored.fields.get(_NEXT)
    return None if successor is None else successor.decode("ascii")


def kind_of(stored: Record | None) -> Kind | None:
    """The kind of a loaded tombstone; None if there is none (or it is not one of ours)."""
    if stored is None:
        return None
    kind = stored.fields.get(_KIND)
    if kind == b"rotated":
        return "rotated"
    if kind == b"emptied":
        return "emptied"
    return None


def fields_of(stored: Record) -> dict[str, bytes]:
    """The session fields a rotated tombstone kept."""
    return {name[len(_FIELD):]: value for name, value in stored.fields.items()
            if name.startswith(_FIELD)}


class Graveyard:
    """The tombstones of one store: filed, looked up and removed by a session's storage key.

    ``grace`` is how long a tombstone lives, in seconds (``SATCHEL_GRACE_PERIOD``).
    Store errors propagate (``StoreUnavailable``).
    """

    MAX_HOPS = 4  # successors followed: rotations of one session within one grace period

    def __init__(self, store: Store, grace: float = DEFAULT_GRACE) -> None:
        self.store = store
        self.grace = grace

    def bury(self, storage_key: str, tomb: Record) -> None:
        """File ``tomb`` for the session under ``storage_key``, replacing one already there."""
        tomb_key = key(storage_key)
        try:
            self.store.create(tomb_key, tomb)
        except KeyError:
            self.store.delete(tomb_key)
            self.store.create(tomb_key, tomb)

    def forget(self, storage_key: str) -> None:
        """Remove the tombstone of the session under ``storage_key``, if there is one."""
        self.store.delete(key(storage_key))

    def kind(self, storage_key: str) -> Kind | None:
        """The kind of the tombstone of the session under ``storage_key``; None if none."""
        return kind_of(self.store.load(key(storage_key)))

    def rotated_view(self, storage_key: str) -> tuple[Record, str] | None:
        """For an id rotated away: its tombstone and the storage key of the live session it
        was rotated to (following later rotations), or None if there is no such tombstone
        or the session it led to has ended (logged out, expired): then the old id is dead.
        """
        tomb = self.store.load(key(storage_key))
        if kind_of(tomb) != "rotated":
            return None
        assert tomb is not None
        successor = successor_of(tomb)
        for _ in range(self.MAX_HOPS):
            if successor is None:
                return None
            if self.store.update(successor, _IS_LIVE):
                return tomb, successor
            later = self.store.load(key(successor))
            successor = (successor_of(later) if later is not None and kind_of(later) == "rotated"
                         else None)
        return None

    def ended(self, storage_key: str) -> bool:
        """True if the session under ``storage_key`` was ended (a logout, an expiry): it is
        not live, and was neither rotated nor emptied by a parallel request.

        A request that rotates the session checks this once its new id is stored, so the
        data does not live on under the new id after a logout; a logout between the check
        and the old id's deletion is still undone (a window of one store call).
        """
        if self.store.update(storage_key, _IS_LIVE):
            return False
        return self.kind(storage_key) is None

    def end(self, storage_key: str) -> None:
        """A logout of the session under ``storage_key``: remove its tombstone, and end the
        sessions it was rotated to meanwhile (their records and tombstones), so that a
        logout sent with an id a parallel request rotated still logs the user out."""
        successor: str | None = storage_key
        for _ in range(self.MAX_HOPS):
            if successor is None:
                return
            tomb_key = key(successor)
            tomb = self.store.load(tomb_key)
            self.store.delete(tomb_key)
            successor = successor_of(tomb) if tomb is not None else None
            if successor is not None:
                self.store.delete(successor)
