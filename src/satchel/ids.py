"""Session ids: 256-bit random, shape-checked, stored only as their SHA-256.

An id is 43 characters of URL-safe base64 (32 random bytes, unpadded). The
store never sees it: it is addressed by :func:`storage_key`, so a copied
database holds no usable cookie. Logs name an id by :func:`fingerprint`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

ID_BYTES = 32
ID_LENGTH = 43  # len(urlsafe_b64encode(32 bytes)) without padding

_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{43}\Z")


def new_id() -> str:
    """Return a fresh id from the OS CSPRNG."""
    return base64.urlsafe_b64encode(secrets.token_bytes(ID_BYTES))[:ID_LENGTH].decode("ascii")


def is_well_formed(session_id: str) -> bool:
    """True if ``session_id`` has the shape of an id this module issues.

    Checked before any store call, so garbage never reaches a store.
    """
    return _ID_SHAPE.match(session_id) is not None


def storage_key(session_id: str) -> str:
    """The key a store files the session under: hex SHA-256 of the id."""
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


def fingerprint(value: str | bytes) -> str:
    """A short, non-reversible tag for logs: never log an id, log this."""
    data = value.encode("utf-8", "replace") if isinstance(value, str) else value
    return hashlib.sha256(b"satchel-log:" + data).hexdigest()[:12]
