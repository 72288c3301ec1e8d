"""The Redis key layout of a session, and the Lua scripts that create and update one (those of
the user sets are in :mod:`~satchel.stores.redis.user_scripts`)."""

from __future__ import annotations

import hashlib

from satchel.stores.redis.user_scripts import INDEX

SCHEMA = """
key   = prefix + "{" + storage_key + "}"   (the hash tag keeps a session in one cluster slot)
type  = hash, with PEXPIRE at expires_at (relative to the store's clock), or earlier at
        m:ulive if that comes first (see below)
f:<name>   -> the session field's bytes, one per session key
m:created, m:seen, m:expires -> repr() of the float timestamps
m:perm     -> "1" or "0"
m:user     -> the user, absent when there is none
m:device   -> the device (at most DEVICE_MAX characters), absent when there is none
m:ulive    -> with m:user: a time (store clock) until which the user's set is known to live

users = prefix + "user:{" + sha256(user) + "}"   (a sorted set: the storage keys of the
        user's sessions, each scored by when it was added, store clock; PEXPIRE never below
        the m:ulive of its members: see satchel.stores.redis.users)

lock  = prefix + "lock:{" + lock_key + "}"   (a string: the holder's token, with PEXPIRE at
        the lease's end; taken with SET NX PX, freed by RELEASE_LOCK)
"""

FIELD = b"f:"
CREATED, SEEN, EXPIRES = b"m:created", b"m:seen", b"m:expires"
PERM, USER, DEVICE, ULIVE = b"m:perm", b"m:user", b"m:device", b"m:ulive"
FLAGS = {(False, False): b"0", (True, False): b"1", (False, True): b"2", (True, True): b"3"}
# KEYS[1] = session key, KEYS[2] (optional) = its user's set; ARGV = now, ttl_ms, the set's
# ttl_ms ("" without KEYS[2]), the storage key, field/value pairs. Returns 0 if a live record
# exists (an m:expires that is missing or not a number is dead, in both scripts).
# The first write of a new key is the HSET, so Redis refuses the whole script when it is out of
# memory (it lets a script that has written go on, and DEL is allowed under OOM).
CREATE = INDEX + """
local expires = redis.call('HGET', KEYS[1], 'm:expires')
if (tonumber(expires) or 0) > tonumber(ARGV[1]) then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('DEL', KEYS[1]) end
for i = 5, #ARGV, 1000 do
  redis.call('HSET', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if KEYS[2] then index(KEYS[2], ARGV[4], ARGV[1], ARGV[3]) end
return 1
"""

# KEYS[1] = session key, KEYS[2] (optional) = the set of the user the patch names; ARGV = now,
# flags (1 = clear, 2 = delete if empty; their sum), ttl_ms ("" keeps it), the user's set
# ("" if the patch names no user; "*": KEYS[2], to add the session to now; else the time its
# set lives until, already added to: a cluster), the storage key, number of deletes, the hash
# fields to delete, then field/value pairs to set.
# Returns 0, changing nothing, if the record is missing or expired; 2 if it was left without a
# field and deleted (flag 2); else 1, or {1, user, m:expires} if the user's set must first be
# made to live longer (or the session added to it: one from before the sets), for which the
# session's TTL stays at m:ulive meanwhile (see satchel.stores.redis.users).
UPDATE = INDEX + """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local expires = redis.call('HGET', key, 'm:expires')
if (tonumber(expires) or 0) <= now then return 0 end
local function hdel(names, first, last)
  for i = first, last, 1000 do
    redis.call('HDEL', key, unpack(names, i, math.min(i + 999, last)))
  end
end
local flags = tonumber(ARGV[2])
if flags % 2 == 1 then
  local names = {}
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if string.sub(name, 1, 2) == 'f:' then names[#names + 1] = name end
  end
  hdel(names, 1, #names)
end
local ndel = tonumber(ARGV[6])
hdel(ARGV, 7, 6 + ndel)
for i = 7 + ndel, #ARGV, 1000 do
  redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if flags >= 2 then
  for _, name in ipairs(redis.call('HKEYS', key)) do
    if string.sub(name, 1, 2) == 'f:' then flags = 0 break end
  end
  if flags ~= 0 then
    redis.call('DEL', key)
    return 2
  end
end
local user = redis.call('HGET', key, 'm:user')
local e = tonumber(redis.call('HGET', key, 'm:expires'))
local moved = ARGV[4]
local lifted = false
if moved == '*' then
  local t = e + math.max(e - now, 0)
  index(KEYS[2], ARGV[5], ARGV[1], ttl_until(t, now))
  redis.call('HSET', key, 'm:ulive', string.format('%.17g', t))
elseif moved ~= '' then
  redis.call('HSET', key, 'm:ulive', moved)
elseif not user then
  lifted = redis.call('HDEL', key, 'm:ulive') == 1
end
local ulive = user and tonumber(redis.call('HGET', key, 'm:ulive'))
if ulive and e > ulive then
  redis.call('PEXPIRE', key, ttl_until(ulive, now))
elseif ARGV[3] ~= '' then
  redis.call('PEXPIRE', key, ARGV[3])
elseif moved ~= '' or lifted then
  redis.call('PEXPIRE', key, ttl_until(e, now))
end
if user and not (ulive and e <= ulive) then
  return {1, user, redis.call('HGET', key, 'm:expires')}
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
RELEASE_LOCK_SHA = hashlib.sha1(RELEASE_LOCK.encode(), usedforsecurity=False).hexdigest()
