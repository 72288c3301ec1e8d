"""The key ring: ``SECRET_KEY`` plus ``SECRET_KEY_FALLBACKS`` -> derived keys.

Every purpose gets its own key, derived with HKDF-SHA256 from the secret, so
a key used to sign cookie ids is never the key used for anything else. The
current key comes first; fallbacks only verify, never sign.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from functools import lru_cache
from hashlib import sha256
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

Secret = str | bytes


def as_bytes(secret: Secret) -> bytes:
    """A secret as bytes (str secrets are UTF-8, as Flask's are)."""
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


@lru_cache(maxsize=256)
def derive(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose``, derived from ``secret`` with HKDF-SHA256."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode("utf-8"))
    return hkdf.derive(secret)


class KeyRing:
    """Derived keys for one purpose: the current one first, then fallbacks.

    ``sign`` uses the current key. ``verify`` returns the index of the key
    that matched (0 = current, >0 = a fallback, so the caller re-signs) or
    ``None``. Comparisons are constant-time.
    """

    __slots__ = ("_macs",)

    def __init__(self, secret: Secret, fallbacks: Sequence[Secret] = (), *, purpose: str) -> None:
        # Per key, SHA-256 states that have hashed the inner and outer pads (RFC 2104), copied
        # per message: what hmac.HMAC.copy() does, without its Python wrapper.
        self._macs = tuple(_pad_states(derive(as_bytes(s), purpose))
                           for s in (secret, *fallbacks))

    def __len__(self) -> int:
        return len(self._macs)

    def mac(self, message: bytes, index: int = 0) -> bytes:
        """HMAC-SHA256 of ``message`` under key ``index`` (0 = the current key)."""
        inner, outer = self._macs[index]
        inner = inner.copy()
        inner.update(message)
        outer = outer.copy()
        outer.update(inner.digest())
        digest: bytes = outer.digest()
        return digest

    def sign(self, message: bytes, length: int = 16) -> bytes:
        """A MAC of ``message`` under the current key, truncated to ``length`` bytes."""
        return self.mac(message)[:length]

    def verify(self, message: bytes, mac: bytes) -> int | None:
        """Index of the key whose MAC of ``message`` equals ``mac``, else ``None``."""
        length = len(mac)
        if length < 16:
            return None
        for index in range(len(self._macs)):
            if hmac.compare_digest(self.mac(message, index)[:length], mac):
                return index
        return None

    def __repr__(self) -> str:
        return f"<KeyRing keys={len(self._macs)}>"


_BLOCK = 64  # SHA-256's block size
_INNER_PAD = bytes(byte ^ 0x36 for byte in range(256))
_OUTER_PAD = bytes(byte ^ 0x5C for byte in range(256))


def _pad_states(key: bytes) -> tuple[Any, Any]:
    """SHA-256 states after the HMAC inner and outer key pads (``key``: at most one block)."""
    if len(key) > _BLOCK:
        raise ValueError("an HMAC key longer than a block is hashed first; derive() never is")
    block = key.ljust(_BLOCK, b"\0")
    return sha256(block.translate(_INNER_PAD)), sha256(block.translate(_OUTER_PAD))
