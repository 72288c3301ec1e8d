"""Sealing bytes into a cookie value with AES-256-GCM, and opening them again.

A token is unpadded base64url of::

    version (1) | flags (1) | key id (4) | salt (16) | nonce (12) | ciphertext + GCM tag (16)

- The master key for each secret is derived with HKDF-SHA256 under this
  module's purpose, so it is never the key that signs server-side cookie ids.
- Each token is encrypted under its own key, keyed BLAKE2s of a random salt
  under the master key (a PRF built for keying), and a random nonce. A single
  AES-GCM key with random nonces is good for about 2**32 messages; per-token
  keys lift that limit, so a busy site never has to count its cookies.
- The key id (4 bytes derived from the master key, revealing nothing of it)
  finds the key without trial decryption; a fallback key's id equal to the
  current one's is harmless, every matching key is tried.
- Associated data binds the purpose, the cookie name and the header: a
  token cannot be replayed under another cookie name or purpose, and its
  flags (permanence, compression) cannot be flipped.
- ``zlib`` compression is used only when the plaintext is at least
  ``COMPRESS_MIN`` bytes and compressing makes it smaller. Compression makes
  the token length depend on the content; an application that stores an
  attacker-chosen value next to a secret in one session can turn it off.

Every malformed, truncated, tampered or foreign token opens to ``None``;
nothing here raises for bad input.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from satchel.keys import Secret, derive, ring_bytes

VERSION = 1
FLAG_PERMANENT = 0x01
FLAG_COMPRESSED = 0x02
_KNOWN_FLAGS = FLAG_PERMANENT | FLAG_COMPRESSED
KID_BYTES = 4
SALT_BYTES = 16
NONCE_BYTES = 12
TAG_BYTES = 16
HEADER_BYTES = 2 + KID_BYTES
OVERHEAD_BYTES = HEADER_BYTES + SALT_BYTES + NONCE_BYTES + TAG_BYTES
_SALT_END = HEADER_BYTES + SALT_BYTES
_NONCE_END = _SALT_END + NONCE_BYTES
COMPRESS_MIN = 128
MAX_TOKEN_CHARS = 8192  # far above any cookie a browser keeps
MAX_PLAINTEXT_BYTES = 1 << 20  # a bound on decompression, whatever the token says
OPENED_CACHE_SIZE = 512
"""Tokens a :class:`Sealer` remembers the plaintext of (cleared when full)."""
OPENED_CACHE_MAX_BYTES = 8192
"""The largest plaintext, in bytes, a :class:`Sealer` remembers."""

_TOKEN_KEY_PERSON = b"satchtk1"  # BLAKE2s personalisation: domain separation
_KEY_ID_INFO = b"satchel/v1/key-id"
_PADDING = {0: b"", 2: b"==", 3: b"="}
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


class Opened(NamedTuple):
    """An opened token: its plaintext, its permanence flag, which key opened it."""

    plaintext: bytes
    permanent: bool
    key_index: int


@dataclass(frozen=True)
class _Key:
    master: bytes
    kid: bytes


class Sealer:
    """Seals with the current secret's key; opens with it or any fallback's.

    ``open`` reports the index of the key that opened a token (0 = current),
    so a caller can re-seal a token opened with a fallback key.

    ``open`` remembers what the last :data:`OPENED_CACHE_SIZE` tokens it opened
    hold (those of at most :data:`OPENED_CACHE_MAX_BYTES` plaintext bytes): a
    browser sends the same token until the session changes, and opening one
    again gives the same answer (the token is authenticated and the key ring of
    a ``Sealer`` never changes), so a repeat skips the key derivation and the
    decryption. Tokens that do not open are never remembered.
    """

    __slots__ = ("_aad_prefix", "_compress", "_keys", "_opened")

    def __init__(self, secret: Secret, fallbacks: Sequence[Secret] = (), *, purpose: str,
                 compress: bool = True) -> None:
        keys = []
        for secret_bytes in ring_bytes(secret, fallbacks):  # ConfigError for a bad key
            master = derive(secret_bytes, purpose)
            kid = hmac.new(master, _KEY_ID_INFO, sha256).digest()[:KID_BYTES]
            keys.append(_Key(master, kid))
        self._keys = tuple(keys)
        self._compress = compress
        self._aad_prefix = purpose.encode("utf-8") + b"\x00"
        self._opened: dict[tuple[str, str], Opened] = {}

    def seal(self, plaintext: bytes, *, name: str, permanent: bool = False) -> str:
        """The token for ``plaintext``, bound to cookie ``name``."""
        flags = FLAG_PERMANENT if permanent else 0
        if self._compress and len(plaintext) >= COMPRESS_MIN:
            packed = zlib.compress(plaintext, 6)
            if len(packed) < len(plaintext):
                plaintext, flags = packed, flags | FLAG_COMPRESSED
        key = self._keys[0]
        header = bytes((VERSION, flags)) + key.kid
        salt_nonce = os.urandom(SALT_BYTES + NONCE_BYTES)
        aead = AESGCM(_token_key(key.master, salt_nonce[:SALT_BYTES]))
        sealed = aead.encrypt(salt_nonce[SALT_BYTES:], plaintext, self._aad(name, header))
        return base64.urlsafe_b64encode(header + salt_nonce + sealed).rstrip(b"=").decode("ascii")

    def open(self, token: str, *, name: str) -> Opened | None:
        """The plaintext sealed in ``token`` for cookie ``name``, or None."""
        cache_key = (name, token)
        opened = self._opened.get(cache_key)
        if opened is None:
            opened = self._open(token, name)
            if opened is not None and len(opened.plaintext) <= OPENED_CACHE_MAX_BYTES:
                if len(self._opened) >= OPENED_CACHE_SIZE:
                    self._opened.clear()
                self._opened[cache_key] = opened
        return opened

    def _open(self, token: str, name: str) -> Opened | None:
        raw = _decode(token)
        if (raw is None or len(raw) < OVERHEAD_BYTES or raw[0] != VERSION
                or raw[1] & ~_KNOWN_FLAGS):
            return None
        flags, kid = raw[1], raw[2:HEADER_BYTES]  # the key id is public: == is fine
        aad = self._aad(name, raw[:HEADER_BYTES])
        for index, key in enumerate(self._keys):
            if key.kid != kid:
                continue
            aead = AESGCM(_token_key(key.master, raw[HEADER_BYTES:_SALT_END]))
            try:
                plaintext = aead.decrypt(raw[_SALT_END:_NONCE_END], raw[_NONCE_END:], aad)
            except InvalidTag:
                continue
            if flags & FLAG_COMPRESSED:
                inflated = _inflate(plaintext)
                if inflated is None:
                    return None
                plaintext = inflated
            return Opened(plaintext, bool(flags & FLAG_PERMANENT), index)
        return None

    def _aad(self, name: str, header: bytes) -> bytes:
        return self._aad_prefix + name.encode("utf-8", "surrogateescape") + b"\x00" + header

    def __repr__(self) -> str:
        return f"<Sealer keys={len(self._keys)} compress={self._compress}>"


def looks_permanent(token: str) -> bool:
    """What a token's (unauthenticated) header claims about permanence.

    A cheap pre-check only: ``Sealer.open`` authenticates the flag. The answer
    depends on the token's first 4 characters only, which few spellings share
    (the version, the flags, a byte of the key id): each is remembered.
    """
    head = token[:4]
    known = _PERMANENCE.get(head)
    if known is None:
        raw = _decode(head)
        known = raw is not None and len(raw) >= 2 and raw[0] == VERSION and bool(
            raw[1] & FLAG_PERMANENT)
        if len(_PERMANENCE) >= _PERMANENCE_SIZE:  # garbage cookies: forget, start again
            _PERMANENCE.clear()
        _PERMANENCE[head] = known
    return known


_PERMANENCE: dict[str, bool] = {}  # a token's first 4 characters -> looks_permanent
_PERMANENCE_SIZE = 1024


def _token_key(master: bytes, salt: bytes) -> bytes:
    return hashlib.blake2s(salt, key=master, person=_TOKEN_KEY_PERSON).digest()


def _decode(token: str) -> bytes | None:
    """Bytes of an unpadded base64url string, in its one canonical spelling only."""
    size = len(token)
    if size > MAX_TOKEN_CHARS or size % 4 == 1 or not token.isascii():
        return None
    text = token.encode("ascii")
    try:  # lenient: skips characters outside the alphabet, which the check below refuses
        raw = binascii.a2b_base64(text.translate(_URLSAFE_TO_STANDARD) + _PADDING[size % 4])
    except binascii.Error:
        return None
    # The one spelling of these bytes: refuses any other character, padding, and a 2- or
    # 3-character tail whose spare low bits are not 0 (several spellings of one token).
    if base64.urlsafe_b64encode(raw).rstrip(b"=") != text:
        return None
    return raw


def _inflate(data: bytes) -> bytes | None:
    inflater = zlib.decompressobj()
    try:
        plaintext = inflater.decompress(data, MAX_PLAINTEXT_BYTES)
    except zlib.error:
        return None
    if inflater.unconsumed_tail or not inflater.eof:
        return None
    return plaintext
