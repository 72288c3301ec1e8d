"""The record layout of :mod:`~satchel.stores.redis.record` in Lua, put in front of every
script that reads or writes a session. Both versions are read; :func:`build` writes version 2.

read(key): the session at ``key`` as a table {perm, created, seen, expires, ulive, user,
device (numbers in seconds, strings or nil), body (the encoded fields)}; nil if there is none
or its metadata cannot be read. A hash (the earlier layout: f:<name> fields, m:* metadata) is
read as its record, and written back as one by the script's next SET. Another type raises
WRONGTYPE. (One GET, no TYPE first, for a string: a command less per script; a GET that
fails looks again.)
build(r, body): the bytes of record ``r`` (version 2); it sets ``r``'s times to those it
keeps, rounded to whole milliseconds as :mod:`~satchel.stores.redis.millis` rounds them
(in Lua 5.1 every number is a double: the same operations give the same results). A
created or seen time out of range, or a NaN, raises an error (the script fails, writing
nothing). fields(body): the names of an encoded body, in order, and a table of each name's
encoded field; an error if the body is cut short.
"""

from __future__ import annotations

from satchel.stores.redis.millis import LIMIT

LUA = r"""
local LIMIT, LIMIT_S = @LIMIT@, @LIMIT@ / 1000
local function readlen(s, p)
  local n = string.byte(s, p)
  if n == 255 then return struct.unpack('>I4', s, p + 1) end
  return n, p + 1
end
local function varlen(n)
  if n < 255 then return string.char(n) end
  return '\255' .. struct.pack('>I4', n)
end
local function getint(s, p)
  local n, mult = 0, 1
  for i = p, p + 7 do
    local b = string.byte(s, i)
    if not b then error('cut short') end
    if b < 128 then
      n = n + b * mult
      if n % 2 == 1 then return -(n + 1) / 2, i + 1 end
      return n / 2, i + 1
    end
    n = n + (b - 128) * mult
    mult = mult * 128
  end
  error('a varint of more than 8 bytes')
end
local function putint(n)
  if n >= 0 then n = 2 * n else n = -2 * n - 1 end
  local out = {}
  while n >= 128 do
    out[#out + 1] = n % 128 + 128
    n = math.floor(n / 128)
  end
  out[#out + 1] = n
  return string.char(unpack(out))
end
local function near(t)
  if not (t >= -LIMIT_S and t <= LIMIT_S) then error('time out of range: ' .. tostring(t)) end
  return math.floor(t * 1000 + 0.5)
end
local function up(t)
  if t ~= t then error('time is NaN') end
  t = math.min(math.max(t, -LIMIT_S), LIMIT_S)
  local m = math.ceil(t * 1000)
  while m / 1000 < t do m = m + 1 end
  while (m - 1) / 1000 >= t do m = m - 1 end
  return m
end
local function down(t)
  if t ~= t then error('time is NaN') end
  t = math.min(math.max(t, -LIMIT_S), LIMIT_S)
  local m = math.floor(t * 1000)
  while m / 1000 > t do m = m - 1 end
  while (m + 1) / 1000 <= t do m = m + 1 end
  return m
end
local function parse(s)
  local head, r, flags, p = string.byte(s, 1), {}, 0, 0
  if head == 1 then
    flags = string.byte(s, 2)
    r.created, r.seen, r.expires = struct.unpack('>ddd', s, 3)
    p = 27
    if math.floor(flags / 2) % 2 == 1 then r.ulive = struct.unpack('>d', s, p); p = p + 8 end
  elseif head and math.floor(head / 16) == 2 then
    flags = head % 16
    local c, d, e
    c, p = getint(s, 2)
    d, p = getint(s, p)
    d = c + d
    e, p = getint(s, p)
    e = d + e
    r.created, r.seen, r.expires = c / 1000, d / 1000, e / 1000
    if math.floor(flags / 2) % 2 == 1 then
      d, p = getint(s, p)
      r.ulive = (e + d) / 1000
    end
  else
    error('not a record')
  end
  r.perm = flags % 2 == 1
  local n = 0
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
  local c, s, e = near(r.created), near(r.seen), up(r.expires)
  r.created, r.seen, r.expires = c / 1000, s / 1000, e / 1000
  local flags, out = r.perm and 1 or 0, {'', putint(c), putint(s - c), putint(e - s)}
  if r.ulive then
    local u = down(r.ulive)
    r.ulive = u / 1000
    flags = flags + 2
    out[#out + 1] = putint(u - e)
  end
  if r.user then
    flags = flags + 4
    out[#out + 1] = varlen(#r.user) .. r.user
  end
  if r.device then
    flags = flags + 8
    out[#out + 1] = varlen(#r.device) .. r.device
  end
  out[1] = string.char(32 + flags)
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
""".replace("@LIMIT@", str(LIMIT))
