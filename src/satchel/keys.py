"""The key ring: ``SECRET_KEY`` plus ``SECRET_KEY_FALLBACKS`` -> derived keys.

Every purpose gets its own key, derived with HKDF-SHA256 from the secret, so
a key used to sign cookie ids is never the key used for anything else. The
current key comes first; fallbacks only verify, never sign.

A key is a non-empty ``str`` (UTF-8, as Flask's are) or ``bytes``; anything
else is a :class:`ConfigError` naming the config key and the fix, where
Flask (and ``bytes(x)``) would quietly make a key of it: ``True`` is the
byte ``\x00``, ``123456`` that many zero bytes, and a ``str`` given as
``SECRET_KEY_FALLBACKS`` makes each of its characters a key, which an
attacker guesses in a few tries. ``bytearray`` and ``memoryview`` are
refused too: a mutable key could change under keys already derived from it.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from functools import lru_cache
from hashlib import sha256
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from satchel.errors import ConfigError

Secret = str | bytes
security_log = logging.getLogger("satchel.security")
MIN_KEY_BYTES = 32  # 256 bits, HMAC-SHA256's key size (RFC 2104 section 3; OWASP)
_RANDOM_KEY = "python -c 'import secrets; print(secrets.token_hex(32))'"
_FROM_ENV = ("(a FLASK_-prefixed environment variable read by app.config.from_prefixed_env()"
             " is parsed as JSON first: 'true' becomes True, and digits an int)")


def as_bytes(secret: Secret, name: str = "SECRET_KEY") -> bytes:
    """A secret as bytes (str secrets are UTF-8, as Flask's are).

    Raises :class:`ConfigError`, naming ``name`` and never the value, for an
    empty key or one that is not a ``str`` or ``bytes``.
    """
    if isinstance(secret, str):
        raw = secret.encode("utf-8")
    elif isinstance(secret, bytes):
        raw = bytes(secret)
    elif isinstance(secret, (bytearray, memoryview)):
        raise ConfigError(f"{name} is {_a(secret)}; give bytes (bytes(key)) or a"
                          " str: a mutable key could change under the keys derived from it")
    elif secret is None:
        raise ConfigError(f"{name} is None; give the key (a str or bytes), or remove it")
    else:
        shown = f" ({secret!r})" if isinstance(secret, bool) else ""  # an int could be the key
        raise ConfigError(f"{name} is {_a(secret)}{shown}, not a str or bytes key;"
                          f" set a long random string, e.g. from {_RANDOM_KEY} {_FROM_ENV}")
    if not raw:
        raise ConfigError(f"{name} is empty; give the key, or remove it")
    return raw


def fallback_tuple(fallbacks: object) -> tuple[Any, ...]:
    """``SECRET_KEY_FALLBACKS`` as a tuple: None is no fallbacks, a list or tuple its keys.

    Raises :class:`ConfigError` for a single ``str`` or ``bytes`` (whose
    characters would each become a key) and for anything that is not a
    sequence of keys. The keys themselves are checked by :func:`ring_bytes`.
    """
    if fallbacks is None:
        return ()
    if isinstance(fallbacks, (str, bytes, bytearray, memoryview)):
        unit = "characters" if isinstance(fallbacks, str) else "bytes"
        raise ConfigError(
            f"SECRET_KEY_FALLBACKS is {_a(fallbacks)} of {len(fallbacks)} {unit}, not a list: Flask"
            f" would make each of its {unit} a key, which an attacker guesses in a few tries; give"
            " a list of old keys, e.g. ['old key'] (from the environment:"
            " FLASK_SECRET_KEY_FALLBACKS='[\"old key\"]', which from_prefixed_env() parses"
            " as a JSON list), or None for no fallbacks")
    if not isinstance(fallbacks, Sequence):
        raise ConfigError(f"SECRET_KEY_FALLBACKS is {_a(fallbacks)}, not a list;"
                          " give a list of old keys (str or bytes), e.g. ['old key'], or None")
    return tuple(fallbacks)


def fallback_bytes(fallbacks: object) -> tuple[bytes, ...]:
    """Each of ``SECRET_KEY_FALLBACKS`` as bytes, checked as :func:`fallback_tuple` and
    :func:`as_bytes` say (ConfigError, naming e.g. ``SECRET_KEY_FALLBACKS[1]``)."""
    return tuple(as_bytes(fallback, f"SECRET_KEY_FALLBACKS[{index}]")
                 for index, fallback in enumerate(fallback_tuple(fallbacks)))


def ring_bytes(secret: Secret, fallbacks: Sequence[Secret] = ()) -> tuple[bytes, ...]:
    """The current key, then each fallback, as bytes (ConfigError for an unusable one)."""
    return (as_bytes(secret), *fallback_bytes(fallbacks))


def _a(value: object) -> str:
    """``value``'s type name with its article: "an int", "a bool"."""
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def short_keys(ring: Sequence[bytes]) -> list[str]:
    """Each key of ``ring`` (from :func:`ring_bytes`) shorter than :data:`MIN_KEY_BYTES`,
    as ``"SECRET_KEY (8 bytes)"``: its config name and length, never the key."""
    return [f"{'SECRET_KEY' if index == 0 else f'SECRET_KEY_FALLBACKS[{index - 1}]'}"
            f" ({len(key)} bytes)" for index, key in enumerate(ring) if len(key) < MIN_KEY_BYTES]


class ShortKeyLog:
    """Logs, once per distinct key ring, its keys shorter than :data:`MIN_KEY_BYTES`.

    On the ``satchel.security`` logger, at WARNING, naming each short key's
    config name and length, never the key. Rings are remembered by a hash of
    their keys' hashes; past 1,024 of them, a new short ring is logged each
    time it is seen. A log record, not a Python warning, so test suites that
    turn warnings into errors still run with short test keys.
    """

    __slots__ = ("_seen",)
    _LIMIT = 1024

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def log(self, ring: Sequence[bytes]) -> None:
        """Log ``ring``'s short keys (from :func:`ring_bytes`) if it has some, once."""
        short = short_keys(ring)
        if not short:
            return
        seen = sha256(b"".join(sha256(key).digest() for key in ring)).digest()
        if seen in self._seen:
            return
        if len(self._seen) < self._LIMIT:
            self._seen.add(seen)
        security_log.warning(
            "short secret key: %s; a key shorter than %d bytes is easier to guess offline from"
            " a single session cookie; use %d random bytes, e.g. secrets.token_hex(32)",
            ", ".join(short), MIN_KEY_BYTES, MIN_KEY_BYTES)


@lru_cache(maxsize=256)
def derive(secret: bytes, purpose: str) -> bytes:
    """A 32-byte key for ``purpose``, derived from ``secret`` with HKDF-SHA256."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode("utf-8"))
    return hkdf.derive(secret)


class KeyRing:
    """Derived keys for one purpose: the current one first, then fallbacks.

    Raises :class:`ConfigError` for a key that is empty or not ``str``/``bytes``,
    or ``fallbacks`` given as one ``str`` (see :func:`ring_bytes`).

    ``sign`` uses the current key. ``verify`` returns the index of the key
    that matched (0 = current, >0 = a fallback, so the caller re-signs) or
    ``None``. Comparisons are constant-time.
    """

    __slots__ = ("_macs",)

    def __init__(self, secret: Secret, fallbacks: Sequence[Secret] = (), *, purpose: str) -> None:
        # Per key, SHA-256 states that have hashed the inner and outer pads (RFC 2104), copied
        # per message: what hmac.HMAC.copy() does, without its Python wrapper.
        self._macs = tuple(_pad_states(derive(key, purpose))
                           for key in ring_bytes(secret, fallbacks))

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
