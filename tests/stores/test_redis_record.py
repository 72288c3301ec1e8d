"""RedisStore's record bytes (satchel.stores.redis.record, .millis) without a server: the
version-2 head's size, its times' rounding and range, and version 1 still read."""

from __future__ import annotations

import math
import random

import pytest

from satchel.store import Record
from satchel.stores.redis.millis import LIMIT, down, nearest, read_varint, up, varint
from satchel.stores.redis.record import Head, decode, encode
from tests.stores.record_v1 import encode_v1

NOW = 1_800_000_000.0
HOUR = 3600.0


def record(created: float, seen: float, expires: float, **kw: object) -> Record:
    return Record({"a": b"1"}, created, seen, expires, **kw)  # type: ignore[arg-type]


def test_a_fresh_session_head_takes_12_bytes_not_26() -> None:
    # head byte, created (6), seen - created (1), expires - seen (4: an hour)
    assert Head(encode(record(NOW, NOW, NOW + HOUR), None, None)).end == 12
    # a month's idle timeout and a day since created: 1 + 6 + 4 + 5
    assert Head(encode(record(NOW, NOW + 86400, NOW + 86400 + 31 * 86400), None, None)).end == 16
    # with a user's set's ulive (twice the remaining life: 5 bytes more)
    data = encode(record(NOW, NOW, NOW + HOUR, user="u"), NOW + 2 * HOUR, None)
    assert Head(data).end == 12 + 4 + 2
    assert data[0] == 0x20 | 2 | 4  # version 2, HAS_ULIVE | HAS_USER


@pytest.mark.parametrize(("created", "seen", "expires", "ulive"), [
    (NOW, NOW, NOW + HOUR, NOW + 2 * HOUR),
    (0.0, 0.0, 0.0, 0.0),                      # a clock at zero
    (NOW, NOW - 5.0, NOW + HOUR, None),         # the clock stepped back: seen before created
    (NOW, NOW + 10.0, NOW + 5.0, NOW),          # expires before seen, ulive before expires
    (-7.25, -3.5, 100.125, 50.0),               # a clock that is not wall time, below zero
    (12.5, 13.0, 12.0, -1.0),                   # a monotonic clock, everything out of order
    (NOW + 0.1, NOW + 0.2, NOW + 0.3, NOW + 0.4),
])
def test_whole_millisecond_times_round_trip_exactly(
        created: float, seen: float, expires: float, ulive: float | None) -> None:
    rec = record(created, seen, expires, permanent=True, user="u", device="d")
    data = encode(rec, ulive, b"d")
    head = Head(data)
    assert (head.created, head.seen, head.expires, head.ulive) == (created, seen, expires, ulive)
    assert decode(data, min(created, seen, expires) - 1) == rec


def test_times_round_to_milliseconds_expires_up_ulive_down() -> None:
    t = NOW + 0.0004
    head = Head(encode(record(t, t + 0.0006, t + HOUR), t + 2 * HOUR, None))
    assert head.created == NOW  # nearest
    assert head.seen == NOW + 0.001
    assert head.expires == NOW + HOUR + 0.001  # up: never before it was asked to end
    assert head.ulive == NOW + 2 * HOUR  # down: never after the user's set is known to live
    assert head.expires - (t + HOUR) < 0.001


def test_rounding_is_idempotent_and_within_a_millisecond() -> None:
    rng = random.Random(14)
    for _ in range(20_000):
        t = rng.choice([NOW, 0.0, -NOW, 1e6]) + rng.uniform(-1e6, 1e6)
        assert up(up(t) / 1000) == up(t) and down(down(t) / 1000) == down(t)
        assert nearest(nearest(t) / 1000) == nearest(t)
        assert up(t) / 1000 >= t and up(t) / 1000 - t < 0.001
        assert down(t) / 1000 <= t and t - down(t) / 1000 < 0.001
        assert abs(nearest(t) / 1000 - t) <= 0.0005 + 1e-6
        data = encode(record(t, t, t), t, None)
        assert encode(decode(data, -math.inf), Head(data).ulive, None) == data  # type: ignore[arg-type]


def test_times_out_of_range() -> None:
    for bad in (math.nan, math.inf, -math.inf, 1e300, (LIMIT + 1000) / 1000):
        with pytest.raises(ValueError, match="out of range"):
            encode(record(bad, NOW, NOW), None, None)
        with pytest.raises(ValueError, match="out of range"):
            encode(record(NOW, bad, NOW), None, None)
    with pytest.raises(ValueError, match="NaN"):
        encode(record(NOW, NOW, math.nan), None, None)
    with pytest.raises(ValueError, match="NaN"):
        encode(record(NOW, NOW, NOW), math.nan, None)
    # An expiry (or ulive) past the limit is kept at it: later than the key's TTL can reach.
    head = Head(encode(record(NOW, NOW, math.inf), math.inf, None))
    assert head.expires == head.ulive == LIMIT / 1000
    head = Head(encode(record(-LIMIT / 1000, LIMIT / 1000, -math.inf), -math.inf, None))
    assert head.expires == head.ulive == -LIMIT / 1000
    assert head.seen - head.created == 2 * LIMIT / 1000


def test_varints() -> None:
    for n in (0, -1, 1, 63, -64, 64, 2**51, -(2**51), 12345678901):
        data = varint(n)
        assert read_varint(b"x" + data + b"y", 1) == (n, 1 + len(data))
    assert [varint(n) for n in (0, -1, 1, -64, 64)] == [b"\0", b"\1", b"\2", b"\x7f", b"\x80\1"]
    assert len(varint(2**51)) == 8  # the largest delta two times in range can make
    with pytest.raises(ValueError, match="8 bytes"):
        read_varint(b"\xff" * 9, 0)
    with pytest.raises(IndexError):
        read_varint(b"\xff\xff", 0)
    assert decode(b"\x20\xff\xff", NOW) == "not a session record (IndexError)"


def test_version_1_is_read() -> None:
    rec = Record({"a": b"1", "big": b"x" * 300}, NOW + 0.123456789, NOW + 1.5, NOW + HOUR + 1e-7,
                 permanent=True, user="ü", device="phone")
    data = encode_v1(rec, NOW + 7.000001)
    assert decode(data, NOW) == rec  # doubles: exactly what was written
    assert Head(data).ulive == NOW + 7.000001
    assert decode(data, NOW + HOUR + 1e-7) is None
    assert decode(b"\x03" + data[1:], NOW) == "not a session record (ValueError)"
