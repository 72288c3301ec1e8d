"""A session as RedisStore keeps it: one compact binary string (see
:data:`~satchel.stores.redis.scripts.SCHEMA`), written and read here and, for the per-key merge
of an update, by the Lua scripts of :mod:`~satchel.stores.redis.record_lua`.

Layout, version 2 (what every write writes)::

    head       1 byte: VERSION << 4 | flags (PERM | HAS_ULIVE | HAS_USER | HAS_DEVICE)
    created    varint: milliseconds of the store clock (see below)
    seen       varint: milliseconds after created
    expires    varint: milliseconds after seen
    ulive      varint: milliseconds after expires   (with HAS_ULIVE)
    user       length, UTF-8 bytes      (with HAS_USER)
    device     length, bytes            (with HAS_DEVICE; text, or packed: see
                                         :mod:`~satchel.stores.redis.devices`)
    fields     until the end: length, name (UTF-8), 2 * length + deflated, value

Times are whole milliseconds (Redis's TTL granularity), signed (zigzag LEB128: a clock that
stepped back, or is not wall time, gives negative deltas), read back as ``ms / 1000``; created
and seen round to the nearest millisecond, expires up, ulive down (see
:mod:`~satchel.stores.redis.millis`). A new session's head takes 12 bytes with an hour's
timeout, 13 with a month's, not 26.

Version 1 (read, never written; sessions written before version 2 live on until they
expire): a version byte (1), a flags byte, then created, seen, expires and (with HAS_ULIVE)
ulive as 8-byte big-endian IEEE 754 doubles (seconds), then user, device and fields as above.

A length is one byte below 255, else 255 then 4 bytes (big-endian). A value of
:data:`DEFLATE_MIN` bytes or more is kept raw-deflated (zlib, no header) when that makes it
shorter, its ``deflated`` bit set: Lua never looks inside a value (it cannot inflate one; it
moves values as bytes).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from satchel.store import Record
from satchel.stores.redis.devices import unpack
from satchel.stores.redis.millis import down, nearest, read_varint, up, varint

VERSION = 2
PERM, HAS_ULIVE, HAS_USER, HAS_DEVICE = 1, 2, 4, 8
DEFLATE_MIN = 64
"""Bytes from which a field's value is kept deflated, if that makes it shorter."""
HEAD_V1 = struct.Struct(">BBddd")  # version 1: version, flags, created, seen, expires
DOUBLE = struct.Struct(">d")
_LONG = struct.Struct(">I")


def length(n: int) -> bytes:
    """The encoding of length ``n`` (see the module's docstring)."""
    return bytes((n,)) if n < 255 else b"\xff" + _LONG.pack(n)


def field(name: bytes, value: bytes) -> bytes:
    """Field ``name`` holding ``value``, encoded (deflated, if that pays)."""
    if len(value) >= DEFLATE_MIN:
        deflate = zlib.compressobj(6, zlib.DEFLATED, -15)  # raw: no header, no checksum
        packed = deflate.compress(value) + deflate.flush()
        if len(packed) < len(value):
            return length(len(name)) + name + length(2 * len(packed) + 1) + packed
    return length(len(name)) + name + length(2 * len(value)) + value


def encode(record: Record, ulive: float | None, device: bytes | None) -> bytes:
    """``record`` as stored (version 2), with ``ulive`` (see :mod:`~satchel.stores.redis.users`)
    and ``device`` (:func:`~satchel.stores.redis.devices.pack`'s bytes of the device, cut to
    its most characters) in place of ``record.device``.

    Raises ValueError for a created or last-seen time that is NaN, infinite or out of range
    (see :mod:`~satchel.stores.redis.millis`); an expiry or ulive beyond it is kept at it."""
    flags = PERM if record.permanent else 0
    created, seen, expires = (nearest(record.created_at), nearest(record.last_seen),
                              up(record.expires_at))
    tail = [varint(created), varint(seen - created), varint(expires - seen)]
    if ulive is not None:
        flags |= HAS_ULIVE
        tail.append(varint(down(ulive) - expires))
    if record.user is not None:
        flags |= HAS_USER
        user = record.user.encode()
        tail += (length(len(user)), user)
    if device is not None:
        flags |= HAS_DEVICE
        tail += (length(len(device)), device)
    tail += [field(name.encode(), value) for name, value in record.fields.items()]
    return bytes((VERSION << 4 | flags,)) + b"".join(tail)


def _text(data: bytes, at: int) -> tuple[bytes, int]:
    """The length-prefixed bytes at offset ``at``, and the offset after them."""
    n = data[at]
    if n == 255:
        n = _LONG.unpack_from(data, at + 1)[0]
        at += 4
    end = at + 1 + n
    if end > len(data):
        raise ValueError("cut short")
    return data[at + 1:end], end


class Head:
    """The metadata of a stored session (no fields): what listings read."""

    __slots__ = ("created", "device", "end", "expires", "millis", "perm", "seen", "ulive",
                 "user")

    def __init__(self, data: bytes) -> None:
        """Raises ValueError, IndexError or struct.error for bytes that are not a record.
        ``millis``: (created, seen, expires, ulive or None) as stored, whole milliseconds;
        None for version 1 (which keeps doubles); ``end``: the offset of the first field."""
        self.ulive: float | None = None
        self.user: bytes | None = None
        self.device: bytes | None = None
        self.millis: tuple[int, int, int, int | None] | None = None
        if data[0] >> 4 == VERSION:
            flags = data[0] & 15
            created, at = read_varint(data, 1)
            delta, at = read_varint(data, at)
            seen = created + delta
            delta, at = read_varint(data, at)
            expires = seen + delta
            self.created, self.seen, self.expires = created / 1000, seen / 1000, expires / 1000
            ulive = None
            if flags & HAS_ULIVE:
                delta, at = read_varint(data, at)
                ulive = expires + delta
                self.ulive = ulive / 1000
            self.millis = (created, seen, expires, ulive)
        elif data[0] == 1:
            _, flags, self.created, self.seen, self.expires = HEAD_V1.unpack_from(data)
            at = HEAD_V1.size
            if flags & HAS_ULIVE:
                self.ulive = DOUBLE.unpack_from(data, at)[0]
                at += DOUBLE.size
        else:
            raise ValueError(f"unknown record version {data[0]}")
        self.perm = bool(flags & PERM)
        if flags & HAS_USER:
            self.user, at = _text(data, at)
        if flags & HAS_DEVICE:
            self.device, at = _text(data, at)
        self.end = at

    def info(self) -> tuple[float, float, float, bytes | None, bytes | None, bytes]:
        """(created, seen, expires, user, device, perm) as the old hash's HMGET gave them."""
        return (self.created, self.seen, self.expires, self.user, self.device,
                b"1" if self.perm else b"0")


def decode(data: bytes, now: float) -> Record | str | None:
    """The record ``data`` holds; None if it expired (``expires`` <= ``now``); for bytes that
    are not a record, what is wrong with them."""
    return decode_with_head(data, now)[0]


def decode_with_head(data: bytes, now: float) -> tuple[Record | str | None, Head | None]:
    """:func:`decode`'s result, and the :class:`Head` it read (None if it could not)."""
    head = None
    try:
        head = Head(data)
        if head.expires <= now:
            return None, head
        fields: dict[str, bytes] = {}
        at, size = head.end, len(data)
        while at < size:
            name, at = _text(data, at)
            n = data[at]
            if n == 255:
                n = _LONG.unpack_from(data, at + 1)[0]
                at += 4
            end = at + 1 + (n >> 1)
            if end > size:
                raise ValueError("cut short")
            value = data[at + 1:end]
            fields[name.decode()] = zlib.decompress(value, -15) if n & 1 else value
            at = end
        return Record(fields, head.created, head.seen, head.expires, head.perm,
                      None if head.user is None else head.user.decode(),
                      None if head.device is None else unpack(head.device)), head
    except (ValueError, IndexError, struct.error, zlib.error) as err:
        return f"not a session record ({type(err).__name__})", None


def info_of(data: Any) -> tuple[Any, ...] | None:
    """The listing metadata of a GET reply (see :meth:`Head.info`); None if missing or not
    a record."""
    if data is None:
        return None
    try:
        return Head(data).info()
    except (ValueError, IndexError, struct.error):
        return None
