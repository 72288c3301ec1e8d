"""The Lua scripts of the per-user sets (see :mod:`satchel.stores.redis.users`).

Each script declares every key it touches. ``INDEX`` is the shared part, put in
front of the scripts that add a session to its user's set.
"""

from __future__ import annotations

import hashlib

MAX_TTL_MS = 2**47  # about 4,000 years: far beyond any session, well within PEXPIRE's range

# index(set, member, now, ttl_ms): add ``member`` to ``set``, scored by ``now``, or just past
# its score if that is not below ``now`` (so a score read earlier never matches a member added
# again: see PRUNE); raise the set's TTL to ``ttl_ms`` if it is below (PTTL is -1 on a new
# set). Never lowers it. ttl_until(t, now): milliseconds from ``now`` to ``t``, at least 1.
INDEX = f"""
local function index(set, member, now, ttl)
  local score = tonumber(now)
  local old = tonumber(redis.call('ZSCORE', set, member))
  if old and old >= score then score = old + 1 end
  redis.call('ZADD', set, string.format('%.17g', score), member)
  if redis.call('PTTL', set) < tonumber(ttl) then redis.call('PEXPIRE', set, ttl) end
end
local function ttl_until(t, now)
  local ms = math.ceil(math.min((t - now) * 1000, {MAX_TTL_MS}))
  if ms < 1 then ms = 1 end
  return string.format('%d', ms)
end
"""

# KEYS[1] = a user's set; ARGV = now, ttl_ms, storage key. Adds the key (a cluster, before the
# session is written in its own slot).
ADD = INDEX + """
index(KEYS[1], ARGV[3], ARGV[1], ARGV[2])
return 1
"""

# KEYS[1] = session key, KEYS[2] (optional) = the user's set; ARGV = now, user, the time the set
# is to live until, its ttl_ms, storage key. If the session is live and still the user's: add it
# to the set (with KEYS[2]; a cluster did it before), note the time in m:ulive and give the
# session its whole TTL again (min of m:expires and m:ulive). Returns 1 if it did, else 0.
EXTEND = INDEX + """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local e = tonumber(redis.call('HGET', key, 'm:expires')) or 0
if e <= now or redis.call('HGET', key, 'm:user') ~= ARGV[2] then return 0 end
if KEYS[2] then index(KEYS[2], ARGV[5], ARGV[1], ARGV[4]) end
local ulive = tonumber(redis.call('HGET', key, 'm:ulive')) or 0
if tonumber(ARGV[3]) > ulive then
  redis.call('HSET', key, 'm:ulive', ARGV[3])
  ulive = tonumber(ARGV[3])
end
redis.call('PEXPIRE', key, ttl_until(math.min(e, ulive), now))
return 1
"""

# A single server. KEYS[1] = a user's set, KEYS[2..] = the session keys of its members; ARGV =
# now, user, the members (storage keys) in KEYS' order. Removes the members whose session is
# gone, expired or another user's; returns {key, created, seen, expires, device, perm} of the
# others (device nil if absent).
LIST = """
local now, user, found = tonumber(ARGV[1]), ARGV[2], {}
for i = 2, #KEYS do
  local m = redis.call('HMGET', KEYS[i], 'm:created', 'm:seen', 'm:expires', 'm:user',
                       'm:device', 'm:perm')
  if (tonumber(m[3]) or 0) > now and m[4] == user then
    found[#found + 1] = {ARGV[i + 1], m[1], m[2], m[3], m[5], m[6]}
  else
    redis.call('ZREM', KEYS[1], ARGV[i + 1])
  end
end
return found
"""

# A single server. KEYS as for LIST; ARGV = now, user, the key to keep ("" for none), the
# members. Deletes the user's live sessions but the kept one, removes them and the stale
# members from the set; returns the deleted keys.
DELETE_USER = """
local now, user, keep, deleted = tonumber(ARGV[1]), ARGV[2], ARGV[3], {}
for i = 2, #KEYS do
  local member = ARGV[i + 2]
  local m = redis.call('HMGET', KEYS[i], 'm:expires', 'm:user')
  local mine = (tonumber(m[1]) or 0) > now and m[2] == user
  if not (mine and member == keep) then
    if mine then
      redis.call('DEL', KEYS[i])
      deleted[#deleted + 1] = member
    end
    redis.call('ZREM', KEYS[1], member)
  end
end
return deleted
"""

# A cluster, per session. KEYS[1] = session key; ARGV = now, user. Deletes the session if it is
# live and the user's. Returns 1 if deleted, 0 if missing, 2 if expired, 3 if another user's.
DELETE_IF_USER = """
local m = redis.call('HMGET', KEYS[1], 'm:expires', 'm:user')
if not m[1] then return 0 end
if (tonumber(m[1]) or 0) <= tonumber(ARGV[1]) then return 2 end
if m[2] ~= ARGV[2] then return 3 end
redis.call('DEL', KEYS[1])
return 1
"""

# A cluster. KEYS[1] = a user's set; ARGV = member, score, member, score, ... Removes each
# member whose score is still the one given: a member added again since it was read (a session
# moved back to the user, say) has another score and stays.
PRUNE = """
for i = 1, #ARGV, 2 do
  if tonumber(redis.call('ZSCORE', KEYS[1], ARGV[i])) == tonumber(ARGV[i + 1]) then
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 1
"""


def sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


ADD_SHA, EXTEND_SHA, LIST_SHA = sha(ADD), sha(EXTEND), sha(LIST)
DELETE_USER_SHA, DELETE_IF_USER_SHA, PRUNE_SHA = sha(DELETE_USER), sha(DELETE_IF_USER), sha(PRUNE)
