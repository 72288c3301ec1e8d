"""The Lua scripts of the per-user sets (see :mod:`satchel.stores.redis.users`).

Each script declares every key it touches. ``INDEX`` is the shared part, put in
front of the scripts that add a session to its user's set.
"""

from __future__ import annotations

import hashlib

from satchel.stores.redis.record_lua import LUA

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
# to the set (with KEYS[2]; a cluster did it before), note the time as its ulive and give the
# session its whole TTL again (min of expires and ulive). Returns 1 if it did, else 0.
EXTEND = INDEX + LUA + """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local r = read(key)
if not r or r.expires <= now or r.user ~= ARGV[2] then return 0 end
if KEYS[2] then index(KEYS[2], ARGV[5], ARGV[1], ARGV[4]) end
if tonumber(ARGV[3]) > (r.ulive or 0) then
  r.ulive = tonumber(ARGV[3])
  redis.call('SET', key, build(r, r.body), 'KEEPTTL')
end
redis.call('PEXPIRE', key, ttl_until(math.min(r.expires, r.ulive), now))
return 1
"""

# at(first, i, step): the session of the i-th member and its key, KEYS[first + (i - 1) * step],
# or (step 2: with the earlier names) the key after it if that one holds nothing.
AT = """
local function at(first, i, step)
  local k = first + (i - 1) * step
  local r = read(KEYS[k])
  if not r and step == 2 then
    k = k + 1
    r = read(KEYS[k])
  end
  return r, KEYS[k]
end
"""

# A single server. KEYS[1] = a user's set, KEYS[2..] = the session keys of its members (each
# one's name, then, with the earlier names, its earlier name); ARGV = now, user, the members
# (storage keys) in KEYS' order. Removes the members whose session is gone, expired or
# another user's; returns {key, created, seen, expires, device, perm} of the others (device
# nil if absent; times as '%.17g', which float() reads back exactly).
LIST = LUA + AT + """
local now, user, found = tonumber(ARGV[1]), ARGV[2], {}
local n = #ARGV - 2
for i = 1, n do
  local r = at(2, i, (#KEYS - 1) / n)
  if r and r.expires > now and r.user == user then
    found[#found + 1] = {ARGV[i + 2], string.format('%.17g', r.created),
                         string.format('%.17g', r.seen), string.format('%.17g', r.expires),
                         r.device or false, r.perm and '1' or '0'}
  else
    redis.call('ZREM', KEYS[1], ARGV[i + 2])
  end
end
return found
"""

# A single server. KEYS as for LIST; ARGV = now, user, the key to keep ("" for none), the
# members. Deletes the user's live sessions but the kept one, removes them and the stale
# members from the set; returns the deleted keys.
DELETE_USER = LUA + AT + """
local now, user, keep, deleted = tonumber(ARGV[1]), ARGV[2], ARGV[3], {}
local n = #ARGV - 3
for i = 1, n do
  local member = ARGV[i + 3]
  local r, key = at(2, i, (#KEYS - 1) / n)
  local mine = r and r.expires > now and r.user == user
  if not (mine and member == keep) then
    if mine then
      redis.call('DEL', key)
      deleted[#deleted + 1] = member
    end
    redis.call('ZREM', KEYS[1], member)
  end
end
return deleted
"""

# A cluster, per session. KEYS[1] = session key; ARGV = now, user. Deletes the session if it is
# live and the user's. Returns 1 if deleted, 0 if missing (or unreadable), 2 if expired, 3 if
# another user's.
DELETE_IF_USER = LUA + """
local r = read(KEYS[1])
if not r then return 0 end
if r.expires <= tonumber(ARGV[1]) then return 2 end
if r.user ~= ARGV[2] then return 3 end
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
