"""The Redis key names of RedisStore's sessions (``key`` in
:data:`~satchel.stores.redis.scripts.SCHEMA`), and the storage keys they map back to.

A storage key as the engine makes them (:func:`satchel.ids.storage_key`: 64 lowercase hex
digits, a SHA-256) is named ``prefix + base64url(digest)``, 43 characters, no padding: 51
bytes with ``satchel:``, 55 with Redis's string header, so a 56-byte allocation with jemalloc's
8-byte size classes (Redis's own builds) or a 64-byte one with 16-byte classes (Debian's
package, on the system's jemalloc), where the earlier ``prefix + "{" + hex + "}"`` (74 bytes)
took an 80-byte one with either. Any other storage key (tests,
a caller's own) is named ``prefix + "}" + key``. Neither form has a hash tag: no script or
multi-key command needs a session in the same Redis Cluster slot as another key (on a
cluster, the user's set is written by a script of its own, and the lock is a key of its
own). The three forms never collide: base64url has no ``}``, ``{`` or ``:``, and the user
sets and locks start ``user:{`` and ``lock:{``. Nor do the names of two stores whose prefixes
nest (``app`` and ``app:staging:``): what follows the shorter prefix in the longer one's names
is never a session name of its own, since a prefix has no ``{`` or ``}`` and a base64url name
is exactly 43 characters (with ``~`` in place of ``}``, a store with prefix ``app`` listed,
and could revoke, the sessions of one with prefix ``app~x``).

Sessions created before this layout live under the earlier name until they expire, never
moved (on a cluster the two names are in different slots, so a move could not be atomic):
with ``legacy`` on, each operation that serves a request (load, update, create's check) and
finds nothing under the new name looks under the earlier one (:meth:`Names.legacy`).
Whatever ``legacy`` says, what lists or revokes sessions (a user's sessions, "log out
everywhere", a delete, a listing of all) still sees the earlier names
(:meth:`Names.earlier`): no session that lives escapes a listing or a revocation, whichever
processes of a mixed deployment still serve it.
"""

from __future__ import annotations

import base64
import binascii
import re

_HEX_KEY = re.compile(r"[0-9a-f]{64}")
_B64_NAME = re.compile(rb"[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]")  # 32 bytes, canonical
_OTHER = b"}"  # not "~": a prefix may hold "~", never "}" (see the module doc)


class Names:
    """The names of one store's sessions: ``prefix`` (str, no ``{`` or ``}``) and whether
    the earlier names are still looked up (``legacy``)."""

    __slots__ = ("_open", "_prefix", "legacy_on")

    def __init__(self, prefix: str, legacy: bool) -> None:
        self._prefix = prefix.encode()
        self._open = self._prefix + b"{"
        self.legacy_on = legacy

    def of(self, key: str) -> bytes:
        """The name of the session with storage key ``key``: the one it is created under."""
        if len(key) == 64 and _HEX_KEY.fullmatch(key):
            return self._prefix + base64.urlsafe_b64encode(bytes.fromhex(key))[:43]
        return self._prefix + _OTHER + key.encode()

    def member(self, member: bytes) -> bytes:
        """:meth:`of` for a user set's member (a storage key, as bytes)."""
        return self.of(member.decode())

    def earlier(self, key: str) -> bytes:
        """The earlier name of ``key`` (``prefix + "{" + key + "}"``), where a session
        created before the current layout lives."""
        return self._open + key.encode() + b"}"

    def earlier_member(self, member: bytes) -> bytes:
        """:meth:`earlier` for a user set's member."""
        return self._open + member + b"}"

    def legacy(self, key: str) -> bytes | None:
        """:meth:`earlier`, for an operation that serves a request; None when ``legacy``
        is off."""
        return self._open + key.encode() + b"}" if self.legacy_on else None

    def key_of(self, name: bytes) -> str | None:
        """The storage key named by ``name`` (a Redis key under the prefix), told by its
        form (the earlier one too); None for a key that is not a session's (a user set, a
        lock, another app's)."""
        if not name.startswith(self._prefix):
            return None
        rest = name[len(self._prefix):]
        try:
            if len(rest) == 43 and _B64_NAME.fullmatch(rest):
                return base64.urlsafe_b64decode(rest + b"=").hex()
            if rest.startswith(_OTHER):
                return rest[1:].decode()
            if rest.startswith(b"{") and rest.endswith(b"}") and len(rest) > 2:
                return rest[1:-1].decode()
        except (UnicodeDecodeError, binascii.Error):
            return None
        return None
