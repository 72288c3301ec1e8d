"""Session handles: public names for stored sessions, for "sign out that device" buttons.

A handle names one stored session so that an app can show it in a page or an admin can pass
it to ``flask satchel revoke --handle``, without being usable as a cookie: it is the session's
storage key (the SHA-256 of the id, :func:`satchel.ids.storage_key`) sealed with AES-SIV
(RFC 5297, deterministic authenticated encryption) under a key derived from ``SECRET_KEY``
for this purpose alone. So:

- a handle is not a session id and no one can compute an id (a cookie) from it: the storage
  key inside is a one-way hash of the id;
- the same session always has the same handle (under the same ``SECRET_KEY``), so a page can
  mark "this device" by comparing handles;
- only the server can open a handle, and a handle that was not made by it (forged, truncated,
  made under another app's key) opens to nothing, before any store call;
- a handle made under a key now in ``SECRET_KEY_FALLBACKS`` still opens.

A handle is 64 characters of URL-safe base64.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from satchel.keys import Secret, ring_bytes

PURPOSE = b"satchel session handle v1"
_SHAPE = re.compile(r"[A-Za-z0-9_-]{64}\Z")
_STORAGE_KEY = re.compile(r"[0-9a-f]{64}\Z")


@lru_cache(maxsize=64)
def _cipher(secret: bytes) -> AESSIV:
    """AES-SIV with a 512-bit key (AES-256 for both halves) derived from ``secret`` by HKDF."""
    key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=PURPOSE).derive(secret)
    return AESSIV(key)


class Handles:
    """Makes and opens the handles of one app's sessions.

    ``secret`` and ``fallbacks``: the app's ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS``
    (raises :class:`~satchel.errors.ConfigError` for an unusable one, as the cookie's keys do).
    """

    __slots__ = ("_ciphers",)

    def __init__(self, secret: Secret, fallbacks: Sequence[Secret] = ()) -> None:
        self._ciphers = tuple(_cipher(key) for key in ring_bytes(secret, fallbacks))

    def handle(self, storage_key: str) -> str:
        """The handle of the session stored under ``storage_key`` (64 hex digits).

        Raises ValueError for a storage key of another shape.
        """
        if _STORAGE_KEY.match(storage_key) is None:
            raise ValueError("not a storage key (64 lowercase hex digits)")
        sealed = self._ciphers[0].encrypt(bytes.fromhex(storage_key), [PURPOSE])
        return base64.urlsafe_b64encode(sealed).decode("ascii")

    def storage_key(self, handle: str) -> str | None:
        """The storage key ``handle`` names, or None if it is not a handle this app made
        (any other string, of any type or length, opens to None; nothing is raised)."""
        if not isinstance(handle, str) or _SHAPE.match(handle) is None:
            return None
        try:
            sealed = base64.urlsafe_b64decode(handle)
        except (binascii.Error, ValueError):
            return None
        for cipher in self._ciphers:
            try:
                return cipher.decrypt(sealed, [PURPOSE]).hex()
            except InvalidTag:
                continue
        return None

    def __repr__(self) -> str:
        return f"<Handles keys={len(self._ciphers)}>"
