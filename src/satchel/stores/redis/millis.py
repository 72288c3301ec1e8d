"""The times of a version-2 record (see :mod:`~satchel.stores.redis.record`): whole
milliseconds of the store clock, Redis's own TTL granularity, as zigzag LEB128 varints.

A time ``t`` (seconds, float) is kept as an integer ``m`` and read back as ``m / 1000``, which
every reader (Python, and the Lua scripts, whose numbers are the same doubles) computes alike.
Each rounding below gives ``m`` back for ``t = m / 1000``: a time read and written again never
drifts. ``created`` and ``seen`` round to the nearest millisecond, ``expires`` up (a session
never ends before it was asked to), a user's set's ``ulive`` down (a session never outlives
the set it is listed in). Every ``m`` lies within +-:data:`LIMIT`, so each delta's zigzag is
below 2**53, exact in Lua's doubles.
"""

from __future__ import annotations

import math

LIMIT = 2**50
"""Milliseconds either side of the clock's zero a time may lie (about 35,700 years)."""
_LIMIT_S = LIMIT / 1000


def nearest(t: float) -> int:
    """``t`` (seconds) in whole milliseconds, rounded to the nearest.

    Raises ValueError for NaN, an infinity or a time beyond :data:`LIMIT`: a created or
    last-seen time the store cannot keep exactly enough (the store clock is broken)."""
    if not -_LIMIT_S <= t <= _LIMIT_S:  # NaN too
        raise ValueError(f"RedisStore: the time {t!r} (store clock, seconds) is out of range;"
                         f" the store keeps times within +-{_LIMIT_S:.0f} s of the clock's zero")
    return math.floor(t * 1000 + 0.5)


def up(t: float) -> int:
    """The fewest whole milliseconds ``m`` with ``m / 1000 >= t``; beyond :data:`LIMIT`
    (an infinity included), the limit (far beyond the key's TTL, which is at most 2**47 ms).
    Raises ValueError for NaN."""
    if math.isnan(t):
        raise ValueError("RedisStore: an expiry time of NaN")
    t = min(max(t, -_LIMIT_S), _LIMIT_S)
    m = math.ceil(t * 1000)
    while m / 1000 < t:
        m += 1
    while (m - 1) / 1000 >= t:
        m -= 1
    return m


def down(t: float) -> int:
    """The most whole milliseconds ``m`` with ``m / 1000 <= t``; beyond :data:`LIMIT`, the
    limit. Raises ValueError for NaN."""
    if math.isnan(t):
        raise ValueError("RedisStore: a time of NaN")
    t = min(max(t, -_LIMIT_S), _LIMIT_S)
    m = math.floor(t * 1000)
    while m / 1000 > t:
        m -= 1
    while (m + 1) / 1000 <= t:
        m += 1
    return m


def varint(n: int) -> bytes:
    """Signed ``n`` as a zigzag LEB128 varint: 0, -1, 1, -2, ... as 0, 1, 2, 3, ...; seven
    bits a byte, least significant first, the high bit set on all bytes but the last."""
    n = 2 * n if n >= 0 else -2 * n - 1
    out = bytearray()
    while n >= 128:
        out.append(n & 127 | 128)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varint(data: bytes, at: int) -> tuple[int, int]:
    """The signed varint at offset ``at``, and the offset after it. Raises IndexError if
    ``data`` ends within it, ValueError if it runs past 8 bytes (no time needs more)."""
    n = shift = 0
    for i in range(at, at + 8):
        byte = data[i]
        n |= (byte & 127) << shift
        if byte < 128:
            return (n >> 1) if not n & 1 else -((n + 1) >> 1), i + 1
        shift += 7
    raise ValueError("a varint of more than 8 bytes")
