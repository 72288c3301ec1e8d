"""A session as RedisStore keeps it: one compact binary string (see
:data:`~satchel.stores.redis.scripts.SCHEMA`), written and read here and, for the per-key merge
of an update, by the Lua scripts of :mod:`~satchel.stores.redis.scripts`.

Layout (big-endian)::

    version    1 byte, VERSION
    flags      1 byte: PERM | HAS_ULIVE | HAS_USER | HAS_DEVICE
    created    8 bytes, IEEE 754 double (store clock, seconds)
    seen       8 bytes, double
    expires    8 bytes, double
    ulive      8 bytes, double          (with HAS_ULIVE)
    user       length, UTF-8 bytes      (with HAS_USER)
    device     length, UTF-8 bytes      (with HAS_DEVICE)
    fields     until the end: length, name (UTF-8), 2 * length + deflated, value

A length is one byte below 255, else 255 then 4 bytes. A value of :data:`DEFLATE_MIN` bytes
or more is kept raw-deflated (zlib, no header) when that makes it shorter, its ``deflated``
bit set: Lua never looks inside a value (it cannot inflate one; it moves values as bytes).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from satchel.store import Record

VERSION = 1
PERM, HAS_ULIVE, HAS_USER, HAS_DEVICE = 1, 2, 4, 8
DEFLATE_MIN = 64
"""Bytes from which a field's value is kept deflated, if that makes it shorter."""
HEAD = struct.Struct(">BBddd")  # version, flags, created, seen, expires: 26 bytes
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
    """``record`` as stored, with ``ulive`` (see :mod:`~satchel.stores.redis.users`) and
    ``device`` (already cut to its most characters) in place of ``record.device``."""
    flags = PERM if record.permanent else 0
    tail = []
    if ulive is not None:
        flags |= HAS_ULIVE
        tail.append(DOUBLE.pack(ulive))
    if record.user is not None:
        flags |= HAS_USER
        user = record.user.encode()
        tail += (length(len(user)), user)
    if device is not None:
        flags |= HAS_DEVICE
        tail += (length(len(device)), device)
    tail += [field(name.encode(), value) for name, value in record.fields.items()]
    return HEAD.pack(VERSION, flags, record.created_at, record.last_seen,
                     record.expires_at) + b"".join(tail)


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

    __slots__ = ("created", "device", "end", "expires", "perm", "seen", "ulive", "user")

    def __init__(self, data: bytes) -> None:
        """Raises ValueError or struct.error for bytes that are not a record."""
        version, flags, self.created, self.seen, self.expires = HEAD.unpack_from(data)
        if version != VERSION:
            raise ValueError(f"unknown record version {version}")
        self.perm = bool(flags & PERM)
        at = HEAD.size
        self.ulive: float | None = None
        self.user: bytes | None = None
        self.device: bytes | None = None
        if flags & HAS_ULIVE:
            self.ulive = DOUBLE.unpack_from(data, at)[0]
            at += DOUBLE.size
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
    try:
        head = Head(data)
        if head.expires <= now:
            return None
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
                      None if head.device is None else head.device.decode())
    except (ValueError, IndexError, struct.error, zlib.error) as err:
        return f"not a session record ({type(err).__name__})"


def info_of(data: Any) -> tuple[Any, ...] | None:
    """The listing metadata of a GET reply (see :meth:`Head.info`); None if missing or not
    a record."""
    if data is None:
        return None
    try:
        return Head(data).info()
    except (ValueError, IndexError, struct.error):
        return None


# The same layout in Lua, put in front of every script that reads or writes a session.
# read(key): the session at ``key`` as a table {perm, created, seen, expires, ulive, user,
# device (numbers, strings or nil), body (the encoded fields)}; nil if there is none or its
# metadata cannot be read. A hash (the earlier layout: f:<name> fields, m:* metadata) is read as its
# record, and written back as one by the script's next SET. Another type raises WRONGTYPE. (One
# GET, no TYPE first, for a string: a command less per script; a GET that fails looks again.)
# build(r): the bytes of record ``r``. fields(body): the names of an encoded body, in order,
# and a table of each name's encoded field; an error if the body is cut short.
LUA = r"""
local function readlen(s, p)
  local n = string.byte(s, p)
  if n == 255 then return struct.unpack('>I4', s, p + 1) end
  return n, p + 1
end
local function varlen(n)
  if n < 255 then return string.char(n) end
  return '\255' .. struct.pack('>I4', n)
end
local function parse(s)
  local version, flags = string.byte(s, 1, 2)
  if version ~= 1 then error('not a record') end
  local r = {perm = flags % 2 == 1, created = struct.unpack('>d', s, 3),
             seen = struct.unpack('>d', s, 11), expires = struct.unpack('>d', s, 19)}
  local p, n = 27, 0
  if math.floor(flags / 2) % 2 == 1 then r.ulive = struct.unpack('>d', s, p); p = p + 8 end
  if math.floor(flags / 4) % 2 == 1 then
    n, p = readlen(s, p)
    r.user = string.sub(s, p, p + n - 1)
    p = p + n
  end
  if math.floor(flags / 8) % 2 == 1 then
    n, p = readlen(s, p)
    r.device = string.sub(s, p, p + n - 1)
    p = p + n
  end
  if p > #s + 1 then error('cut short') end
  r.body = string.sub(s, p)
  return r
end
local function from_hash(key)
  local h, m, body = redis.call('HGETALL', key), {}, {}
  for i = 1, #h, 2 do
    local name, value = h[i], h[i + 1]
    if string.sub(name, 1, 2) == 'f:' then
      name = string.sub(name, 3)
      body[#body + 1] = varlen(#name) .. name .. varlen(2 * #value) .. value
    else
      m[name] = value
    end
  end
  local r = {created = tonumber(m['m:created']), seen = tonumber(m['m:seen']),
             expires = tonumber(m['m:expires']), perm = m['m:perm'] == '1',
             ulive = tonumber(m['m:ulive']), user = m['m:user'], device = m['m:device'],
             body = table.concat(body)}
  if r.created and r.seen and r.expires then return r end
end
local function read(key)
  local s = redis.pcall('GET', key)
  if type(s) == 'table' then
    if redis.call('TYPE', key)['ok'] == 'hash' then return from_hash(key) end
    s = redis.call('GET', key)
  end
  if not s then return nil end
  local ok, r = pcall(parse, s)
  if ok then return r end
end
local function build(r, body)
  local flags, out = r.perm and 1 or 0, {'', struct.pack('>ddd', r.created, r.seen, r.expires)}
  if r.ulive then
    flags = flags + 2
    out[#out + 1] = struct.pack('>d', r.ulive)
  end
  if r.user then
    flags = flags + 4
    out[#out + 1] = varlen(#r.user) .. r.user
  end
  if r.device then
    flags = flags + 8
    out[#out + 1] = varlen(#r.device) .. r.device
  end
  out[1] = string.char(1, flags)
  out[#out + 1] = body
  return table.concat(out)
end
local function fields(body)
  local names, chunks, p = {}, {}, 1
  while p <= #body do
    local start, n, v = p, 0, 0
    n, p = readlen(body, p)
    local name = string.sub(body, p, p + n - 1)
    v, p = readlen(body, p + n)
    p = p + math.floor(v / 2)
    names[#names + 1] = name
    chunks[name] = string.sub(body, start, p - 1)
  end
  if p ~= #body + 1 then error('cut short') end
  return names, chunks
end
"""
