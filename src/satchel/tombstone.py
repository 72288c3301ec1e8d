"""Tombstones: what a store remembers, for a short while, of a session id that ended early.

When a request rotates a session's id (``regenerate()``, at login) or empties
it, requests still in flight may carry the old id. Without a trace of what
happened they would take the old id's absence for an unknown id, and answer
with a brand-new anonymous cookie over the login, or drop a write to a key
the emptying request never saw.

So the engine leaves a *tombstone*: an ordinary store record, filed under a
storage key that no session id maps to (``ids.storage_key(sid + ".tomb")``;
a real id has no dot), that lives ``grace`` seconds. Its fields are the
engine's own::

    "kind"        b"rotated" or b"emptied"
    "f:<name>"    (rotated only) the session's stored fields before the rotation

A late request that finds a *rotated* tombstone opens the session as it was
before the rotation, read-only: it writes nothing and sends no cookie, so the
browser keeps the login's new cookie, and a planted old id never sees the
new session (session fixation, OWASP). One that finds an *emptied*
tombstone keeps its own changes in a new session. No tombstone (logout,
expiry, revocation): the request's changes are dropped, as before. A store
needs nothing new for this: tombstones are records like any other, and
expire like them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from satchel import ids
from satchel.store import Record

Kind = Literal["rotated", "emptied"]
DEFAULT_GRACE = 60.0  # seconds; SATCHEL_GRACE_PERIOD
_KIND = "kind"
_FIELD = "f:"


def key(sid: str) -> str:
    """The storage key of ``sid``'s tombstone."""
    return ids.storage_key(sid + ".tomb")


def record(kind: Kind, now: float, grace: float, *, permanent: bool = False,
           fields: Mapping[str, bytes] | None = None) -> Record:
    """A tombstone of ``kind`` living ``grace`` seconds from ``now``.

    ``fields`` (rotated only) are the session's stored fields before the
    rotation, kept for the read-only view of late requests.
    """
    kept = {_KIND: kind.encode()}
    if fields:
        kept.update({_FIELD + name: value for name, value in fields.items()})
    return Record(kept, now, now, now + grace, permanent=permanent)


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
