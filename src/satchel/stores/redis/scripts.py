"""The Redis key layout of a session, and the Lua scripts that create and update one (those of
the user sets are in :mod:`~satchel.stores.redis.user_scripts`)."""

from __future__ import annotations

import hashlib

from satchel.stores.redis.record_lua import LUA
from satchel.stores.redis.user_scripts import INDEX

FLAGS = {(False, False): b"0", (True, False): b"1", (False, True): b"2", (True, True): b"3"}
# The old layout's hash fields (the layout before the string: see SCHEMA).
FIELD = b"f:"
CREATED, SEEN, EXPIRES = b"m:created", b"m:seen", b"m:expires"
PERM, USER, DEVICE = b"m:perm", b"m:user", b"m:device"

SCHEMA = """
key   = prefix + base64url(storage_key's 32 bytes), 43 characters, no padding (51 bytes with
        "satchel:"; satchel.stores.redis.names); a storage key that is not 64 lowercase hex
        digits: prefix + "}" + storage_key. No hash tag: no script or multi-key command
        needs a session in one cluster slot with another key.
        Earlier builds named it prefix + "{" + storage_key + "}"; such a session stays under
        that name until it expires, found there (with legacy_key_names) by each operation
        that finds nothing under the name above, and deleted under both names.
type  = string, with PEXPIRE at expires_at (relative to the store's clock), or earlier at
        ulive if that comes first (see below); its bytes (satchel.stores.redis.record):
        version 2 << 4 | flags (1 byte: perm, has ulive, has user, has device)
        | created | seen - created | expires - seen | [ulive - expires]
        | [user] | [device] | fields: name, value, until the end
        (times: whole milliseconds of the store clock as zigzag LEB128 varints, created and
        seen rounded to the nearest, expires up, ulive down: 12 bytes for a new session's
        head with an hour's timeout; strings are length-prefixed; a value of 64 bytes or
        more is raw-deflated when that makes it shorter). One string, not a hash: a hash
        whose values pass 64 bytes leaves Redis's compact listpack encoding and costs about
        three times as much memory.
        Version 1 (written before version 2, read until such sessions expire): version (1)
        | flags | created | seen | expires | [ulive] (8-byte doubles, seconds) | the rest as
        above. Every write writes version 2.
user   -> the user, absent when there is none
device -> the device (at most DEVICE_MAX characters), absent when there is none; packed
          where that is shorter (the address as bytes, the user agent deflated against a
          preset dictionary: satchel.stores.redis.devices)
ulive  -> with a user: a time (store clock) until which the user's set is known to live

A session written in the earlier layout is a hash (f:<name> -> value; m:created, m:seen,
m:expires, m:ulive -> repr() of the float; m:perm -> "1" or "0"; m:user, m:device): it is
read as it is, and the next update rewrites it as a string (the scripts read both).

users = prefix + "user:{" + sha256(user) + "}"   (a sorted set: the storage keys of the
        user's sessions, each scored by when it was added, store clock; PEXPIRE never below
        the ulive of its members: see satchel.stores.redis.users)

lock  = prefix + "lock:{" + lock_key + "}"   (a string: the holder's token, with PEXPIRE at
        the lease's end; taken with SET NX PX, freed by RELEASE_LOCK)
"""

# KEYS[1] = session key, KEYS[2] (optional) = its user's set, then (with ARGV[6] = "1") the
# session's earlier key name; ARGV = now, ttl_ms, the set's ttl_ms ("" without the set), the
# storage key, the record's bytes, "1" or "". Returns 0 if a live record exists under either
# name (one that cannot be read is dead, in both scripts).
# The only write to the session is one SET, the script's first write, so Redis refuses the
# whole script when it is out of memory (it lets a script that has written go on).
CREATE = INDEX + LUA + """
local now, nkeys = tonumber(ARGV[1]), #KEYS
local r = read(KEYS[1])
if r and r.expires > now then return 0 end
if ARGV[6] == '1' then
  r = read(KEYS[nkeys])
  if r and r.expires > now then return 0 end
  nkeys = nkeys - 1
end
redis.call('SET', KEYS[1], ARGV[5], 'PX', ARGV[2])
if nkeys > 1 then index(KEYS[2], ARGV[4], ARGV[1], ARGV[3]) end
return 1
"""

# KEYS[1] = session key, KEYS[2] (optional) = the set of the user the patch names; ARGV = now,
# flags (1 = clear, 2 = delete if empty; their sum), ttl_ms ("" keeps it), the user's set
# ("" if the patch names no user; "*": KEYS[2], to add the session to now; else the time its
# set lives until, already added to: a cluster), the storage key, last seen and expires (8-byte
# doubles, already rounded to whole milliseconds as the record keeps them; "" to keep),
# permanent ("1", "0", "" to keep), the user ("" keeps it, "-" removes it, "=" + user sets it),
# the number of deletes, the names to delete, then name/encoded field pairs to set
# (satchel.stores.redis.record.field). What follows the SET sees the times it wrote.
# Returns 0, changing nothing, if the record is missing, expired or cannot be read; 2 if it
# was left without a field and deleted (flag 2); else 1, or {1, user, expires} if the user's
# set must first be made to live longer (or the session added to it: one from before the
# sets), for which the session's TTL stays at ulive meanwhile (see satchel.stores.redis.users).
# The session is written by one SET, the first write (see CREATE), whole: the per-key merge
# happens here.
UPDATE = INDEX + LUA + """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local r = read(key)
if not r or r.expires <= now then return 0 end
local flags, ndel = tonumber(ARGV[2]), tonumber(ARGV[10])
local body = r.body
if flags % 2 == 1 or #ARGV > 10 then
  local ok, names, chunks = true, {}, {}
  if flags % 2 == 0 then ok, names, chunks = pcall(fields, body) end
  if not ok then return 0 end
  for i = 11, 10 + ndel do chunks[ARGV[i]] = nil end
  for i = 11 + ndel, #ARGV, 2 do
    names[#names + 1] = ARGV[i]
    chunks[ARGV[i]] = ARGV[i + 1]
  end
  local out = {}
  for _, name in ipairs(names) do
    if chunks[name] then
      out[#out + 1] = chunks[name]
      chunks[name] = nil
    end
  end
  body = table.concat(out)
end
if flags >= 2 and body == '' then
  redis.call('DEL', key)
  return 2
end
if ARGV[6] ~= '' then r.seen = struct.unpack('>d', ARGV[6]) end
if ARGV[7] ~= '' then r.expires = struct.unpack('>d', ARGV[7]) end
if ARGV[8] ~= '' then r.perm = ARGV[8] == '1' end
if ARGV[9] == '-' then r.user = nil elseif ARGV[9] ~= '' then r.user = string.sub(ARGV[9], 2) end
local user, e, moved, lifted = r.user, r.expires, ARGV[4], false
if moved == '*' then
  r.ulive = e + math.max(e - now, 0)
elseif moved ~= '' then
  r.ulive = tonumber(moved)
elseif not user then
  lifted = r.ulive ~= nil
  r.ulive = nil
end
redis.call('SET', key, build(r, body), 'KEEPTTL')
e = r.expires
if moved == '*' then index(KEYS[2], ARGV[5], ARGV[1], ttl_until(r.ulive, now)) end
local ulive = user and r.ulive
if ulive and e > ulive then
  redis.call('PEXPIRE', key, ttl_until(ulive, now))
elseif ARGV[3] ~= '' then
  redis.call('PEXPIRE', key, ARGV[3])
elseif moved ~= '' or lifted then
  redis.call('PEXPIRE', key, ttl_until(e, now))
end
if user and not (ulive and e <= ulive) then
  return {1, user, string.format('%.17g', e)}
end
return 1
"""
# KEYS[1] = session key; ARGV = the session's bytes as last read, the bytes UPDATE would write
# onto them (satchel.stores.redis.merge), ttl_ms ("" keeps the TTL). Writes them if the session
# still holds exactly the bytes read (a GET that meets a hash, the earlier layout, does not
# match). Returns 1 if it wrote, else 0 (nothing changed: the caller sends UPDATE). No record
# to parse, no function to define, few arguments: about a third of UPDATE's server time.
FAST_UPDATE = """
if redis.pcall('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""
# KEYS[1] = lock key; ARGV[1] = token. Deletes the lock only if that token holds it: a holder
# whose lease ran out never frees the lock of whoever took it next. Returns 1 if deleted.
RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
CREATE_SHA = hashlib.sha1(CREATE.encode(), usedforsecurity=False).hexdigest()
UPDATE_SHA = hashlib.sha1(UPDATE.encode(), usedforsecurity=False).hexdigest()
FAST_UPDATE_SHA = hashlib.sha1(FAST_UPDATE.encode(), usedforsecurity=False).hexdigest()
RELEASE_LOCK_SHA = hashlib.sha1(RELEASE_LOCK.encode(), usedforsecurity=False).hexdigest()
