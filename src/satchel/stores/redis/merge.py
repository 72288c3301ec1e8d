"""The client's half of an update's fast path: the bytes the UPDATE script would write.

An update is a Lua script that reads the session, merges the patch per key and writes it
back (:data:`~satchel.stores.redis.scripts.UPDATE`). In Redis's Lua that costs the server
about 45 microseconds per write, more than the round trip itself. The request that updates
a session has nearly always just read it, so the store keeps the bytes it read (one session
per thread, see :class:`LastRead`) and computes here what UPDATE would write onto them. A
small script (:data:`~satchel.stores.redis.scripts.FAST_UPDATE`) writes that if the session
still holds exactly those bytes (one GET, one SET); if anything changed meanwhile (a
parallel write, a delete, an expiry) it writes nothing and the store sends UPDATE, which
merges on the server as before. What FAST_UPDATE writes is UPDATE's result byte for byte;
where UPDATE would do more than one SET, :func:`merged` returns None and UPDATE is sent.
"""

from __future__ import annotations

import threading
from hmac import compare_digest

from satchel.store import Patch
from satchel.stores.redis.millis import nearest, up, varint
from satchel.stores.redis.record import HAS_DEVICE, HAS_ULIVE, HAS_USER, PERM, VERSION, Head, length

FAST_MAX = 4096
"""Most bytes of a stored session the fast path is taken for: the script is sent the bytes
read as well as the merged ones; above this, sending the patch alone costs less."""


class LastRead(threading.local):
    """The storage key, bytes and head of the last session a thread read (see the module)."""

    kept: tuple[str, bytes, Head] | None = None

    def keep(self, key: str, data: bytes, head: Head) -> None:
        """Note ``data`` (whose :class:`Head` is ``head``), just read for ``key``; a version 1
        record, or one above :data:`FAST_MAX` bytes, is not noted."""
        if len(data) <= FAST_MAX and head.millis is not None:
            self.kept = (key, data, head)

    def take(self, key: str) -> tuple[bytes, Head] | None:
        """The bytes and head last read for ``key`` by this thread, forgotten now; None if
        the last read was of another session (or none)."""
        kept = self.kept
        if kept is None:
            return None
        self.kept = None
        if kept[0] is not key and not compare_digest(kept[0].encode(), key.encode()):
            return None
        return kept[1], kept[2]


def _fields(data: bytes, at: int) -> dict[bytes, bytes]:
    """Each field's name and its encoded bytes (name and value), in order, from offset ``at``
    to the end; IndexError if cut short (the script's ``fields``)."""
    chunks: dict[bytes, bytes] = {}
    size = len(data)
    while at < size:
        start = at
        n = data[at]
        if n == 255:
            n = int.from_bytes(data[at + 1:at + 5], "big")
            at += 4
        name = data[at + 1:at + 1 + n]
        at += 1 + n
        n = data[at]
        if n == 255:
            n = int.from_bytes(data[at + 1:at + 5], "big")
            at += 4
        at += 1 + (n >> 1)
        if at > size:
            raise IndexError("cut short")
        chunks[name] = data[start:at]
    return chunks


def merged(data: bytes, head: Head, patch: Patch, sets: list[tuple[bytes, bytes]],
           now: float) -> bytes | None:
    """The bytes UPDATE writes (with one SET) when the session holds ``data`` (whose head is
    ``head``, a version-2 one).

    ``sets`` are the patch's fields to set, each name (UTF-8) with its encoded field
    (:func:`~satchel.stores.redis.record.field`), in the patch's order. None when the script
    must do more than one SET (move the session to a user, or out of one, extend a user's
    set, delete an emptied session), or when ``data`` is not a live record: the script then
    decides (a record that cannot be read is GONE there).
    """
    millis = head.millis
    if patch.user is not None or millis is None or head.expires <= now:
        return None  # the script compares the expiry as it reads it: head.expires
    if not (patch.clear or patch.set or patch.delete):  # the script keeps the body as it is
        if patch.delete_if_empty and head.end == len(data):
            return None  # no field: the script deletes the session
        return _with_head(data, head, millis, patch, [data[head.end:]])
    try:
        chunks = {} if patch.clear else _fields(data, head.end)
    except IndexError:
        return None
    for name in patch.delete:
        if name in patch.set:  # the script would keep such a name's place
            return None
        chunks.pop(name.encode(), None)
    for encoded, chunk in sets:
        chunks[encoded] = chunk
    if patch.delete_if_empty and not chunks:
        return None
    return _with_head(data, head, millis, patch, list(chunks.values()))


def _with_head(data: bytes, head: Head, millis: tuple[int, int, int, int | None],
               patch: Patch, body: list[bytes]) -> bytes | None:
    """``body`` after the head the script writes for ``patch`` (``millis``: the head's
    times); None if the script must do more than one SET (see :func:`merged`)."""
    created, seen, expires, ulive = millis
    if patch.expires_at is not None:
        expires = up(patch.expires_at)
    # A user's session is written alone only while its user's set outlives it; a session
    # with no user but a ulive has it lifted (and its TTL reset) by the script.
    if (head.user is None) != (ulive is None) or (ulive is not None and expires > ulive):
        return None
    if patch.last_seen is None and patch.expires_at is None and patch.permanent is None:
        return data[:head.end] + b"".join(body)  # the head as the script writes it
    if patch.last_seen is not None:
        seen = nearest(patch.last_seen)
    flags = data[0] & (HAS_ULIVE | HAS_USER | HAS_DEVICE)
    if head.perm if patch.permanent is None else patch.permanent:
        flags |= PERM
    out = [bytes((VERSION << 4 | flags,)), varint(created), varint(seen - created),
           varint(expires - seen)]
    if ulive is not None:
        out.append(varint(ulive - expires))
    if head.user is not None:
        out += (length(len(head.user)), head.user)
    if head.device is not None:
        out += (length(len(head.device)), head.device)
    out += body
    return b"".join(out)
