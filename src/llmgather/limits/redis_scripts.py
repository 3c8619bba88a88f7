"""The Lua scripts of `RedisLimiter`: each runs atomically inside Redis, so every process
sharing a key sees one state.

The arithmetic is the in-process limiter's (`limits.budgets`, `bucket`, `window`), kept apart
from it only because it must run where the state lives. One hash holds the scalars:

    used:NAME, at:NAME   a per-minute budget as how much of it is spent (decaying at its rate)
                         as of a time: a new limit then keeps what was spent, with no resizing
    ann:NAME             a limit a provider announced (the user's own come with each call;
                         the lower of the two paces)
    found:NAME, found_until:NAME    a pace 429s taught where nothing is announced
                         (`limits.discovery`), until when it holds: kept apart from what a
                         provider announced, and for a while only, so a later run on the key is
                         not held to an old guess for ever (the process that found it renews it)
    day_total            what the per-day window holds
    paused_until, backoff, penalties    the shared hold after a 429 or an outage
    cap_used, cap_out, cap_exhausted    the cost cap (`limits.cap`): spent or reserved,
                         the reservations still open, and the cap at which it refused a send
                         (for good, unless a higher cap is given)

beside a sorted set of concurrency leases (member: lease id, score: expiry), the per-day
window as slots of a minute (a sorted set of slot -> last take, a hash of slot -> amount), and
the ids of the penalties counted lately (a sorted set of id -> time: a call retried after its
reply was lost counts once), and each lease's open reservation of the cost cap (a hash of lease
-> amount): a lease that expires (its process died) closes it, charged in full, since its
answer may have been billed.

Times are seconds: Redis's own `TIME` (one clock for every machine), or the caller's `now`
when it passes one (the tests' fake clock). Numbers go back as strings: Redis turns a Lua
number reply into an integer.
"""

from __future__ import annotations

# KEYS: state hash, leases zset, day slots zset, day amounts hash, penalty ids zset, cap
# reservations hash.
# Each budget arrives as 5 ARGV entries: name, window, paced (1/0; 2: a cap), limit ('' = the
# one announced, if any) and amount (to reserve, or for `settle` to give back).
COMMON = r"""
local state, leases, day_slots, day_amounts = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local penalty_ids, cap_leases = KEYS[5], KEYS[6]
local NO_WAIT = 1e-9
local DAY_SLOT = 60
local PENALTY_IDS_KEPT = 3600  -- seconds: far longer than any retry of one call

local function num(x, default)
  if x == false or x == nil or x == '' then return default end
  return tonumber(x)
end
local function str(x) return string.format('%.17g', x) end

local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1e6
end

-- a pace the 429s taught, while it holds; an expired one is forgotten
local function found_pace(name, now)
  local pace = num(redis.call('HGET', state, 'found:' .. name), nil)
  if pace == nil then return nil end
  if now >= num(redis.call('HGET', state, 'found_until:' .. name), 0) then
    redis.call('HDEL', state, 'found:' .. name, 'found_until:' .. name)
    return nil
  end
  return pace
end

local function budgets_from(first, now)
  local found = {}
  local i = first
  while ARGV[i] do
    local b = {name = ARGV[i], window = tonumber(ARGV[i + 1]), paced = ARGV[i + 2] == '1',
               capped = ARGV[i + 2] == '2', limit = num(ARGV[i + 3], nil),
               amount = tonumber(ARGV[i + 4])}
    -- the user's own limit is a ceiling: a lower announced one, or a lower found pace, paces
    local announced = num(redis.call('HGET', state, 'ann:' .. b.name), nil)
    if announced ~= nil and (b.limit == nil or announced < b.limit) then b.limit = announced end
    local pace = found_pace(b.name, now)
    if pace ~= nil and (b.limit == nil or pace < b.limit) then b.limit = pace end
    table.insert(found, b)
    i = i + 5
  end
  return found
end

-- a per-minute budget: spent so far, after what time has refilled since it was last touched
local function capacity(b, burst)
  return math.max(1.0, b.limit / b.window * burst)
end
local function spent(b, now)
  local used = num(redis.call('HGET', state, 'used:' .. b.name), 0)
  local at = num(redis.call('HGET', state, 'at:' .. b.name), now)
  if now > at then used = math.max(0, used - (now - at) * b.limit / b.window) end
  return used
end
local function set_spent(b, now, used)
  redis.call('HSET', state, 'used:' .. b.name, str(used), 'at:' .. b.name, str(now))
end

-- the per-day window: slots leave it a window after their last take
local function day_expire(b, now)
  local total = num(redis.call('HGET', state, 'day_total'), 0)
  local gone = redis.call('ZRANGEBYSCORE', day_slots, '-inf', str(now - b.window))
  for _, slot in ipairs(gone) do
    total = total - num(redis.call('HGET', day_amounts, slot), 0)
    redis.call('HDEL', day_amounts, slot)
    redis.call('ZREM', day_slots, slot)
  end
  if redis.call('ZCARD', day_slots) == 0 then total = 0 end
  redis.call('HSET', state, 'day_total', str(total))
  return total
end

local function wait_time(b, now, burst)
  if b.amount <= 0 then return 0 end
  if b.paced then
    local cap = capacity(b, burst)
    local excess = spent(b, now) + math.min(b.amount, cap) - cap
    if excess <= 0 then return 0 end
    return excess / (b.limit / b.window)
  end
  local excess = day_expire(b, now) + math.min(b.amount, b.limit) - b.limit
  if excess <= NO_WAIT then return 0 end
  local freed = 0
  local slots = redis.call('ZRANGE', day_slots, 0, -1, 'WITHSCORES')
  for i = 1, #slots, 2 do
    freed = freed + num(redis.call('HGET', day_amounts, slots[i]), 0)
    if freed >= excess - NO_WAIT then return tonumber(slots[i + 1]) + b.window - now end
  end
  return tonumber(slots[#slots]) + b.window - now
end

local function take(b, now)
  if b.amount == 0 then return end
  if b.paced then
    set_spent(b, now, spent(b, now) + b.amount)
    return
  end
  local slot = tostring(math.floor(now / DAY_SLOT))
  local last = num(redis.call('ZSCORE', day_slots, slot), now)
  redis.call('ZADD', day_slots, str(math.max(last, now)), slot)
  redis.call('HSET', day_amounts, slot, str(num(redis.call('HGET', day_amounts, slot), 0) + b.amount))
  redis.call('HSET', state, 'day_total', str(num(redis.call('HGET', state, 'day_total'), 0) + b.amount))
end

local function snapshot(now, in_flight, extra)
  local reply = {str(now), tostring(in_flight),
                 redis.call('HGET', state, 'paused_until') or '0',
                 redis.call('HGET', state, 'penalties') or '0'}
  for _, x in ipairs(extra) do table.insert(reply, x) end
  local fields = redis.call('HGETALL', state)
  for i = 1, #fields, 2 do
    local field = fields[i]
    if string.sub(field, 1, 4) == 'ann:' then
      table.insert(reply, string.sub(field, 5))
      table.insert(reply, fields[i + 1])
    elseif string.sub(field, 1, 6) == 'found:' or string.sub(field, 1, 12) == 'found_until:' then
      -- kept apart by their prefix: the reader tells them from announced limits
      table.insert(reply, field)
      table.insert(reply, fields[i + 1])
    end
  end
  return reply
end

-- a reservation of the cost cap closed: it may no longer give money back (what it kept is spent)
local function cap_close(lease)
  local held = num(redis.call('HGET', cap_leases, lease), nil)
  if held == nil then return end
  redis.call('HDEL', cap_leases, lease)
  redis.call('HSET', state, 'cap_out', str(math.max(0, num(redis.call('HGET', state, 'cap_out'), 0) - held)))
end

local function live_leases(now)
  -- the leases of a process that died: their reservations of the cap stay charged, closed
  for _, lease in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', str(now))) do
    cap_close(lease)
  end
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', str(now))
  return redis.call('ZCARD', leases)
end

-- the cost cap: nil when `b` fits; 'wait' while open reservations may give money back;
-- 'exhausted' (for good, at this cap: `cap_exhausted` holds the cap it was exhausted at, and a
-- rerun with a higher one goes on from what was spent) when nothing could free room
local function cap_refusal(b)
  local at = num(redis.call('HGET', state, 'cap_exhausted'), nil)
  if at ~= nil and b.limit <= at then return 'exhausted' end
  local used = num(redis.call('HGET', state, 'cap_used'), 0)
  if used + b.amount <= b.limit then return nil end
  if num(redis.call('HGET', state, 'cap_out'), 0) > 0 then return 'wait' end
  redis.call('HSET', state, 'cap_exhausted', str(b.limit))
  return 'exhausted'
end
"""

# ARGV: now, cap, lease id, lease seconds, burst seconds, then the budgets (amount: to reserve).
# Reply: the snapshot, then granted (1/0; x: refused, the cost cap exhausted), what holds the
# send and for how long (-1: until an event; refused: what the cap holds spent), then the
# announced limits as name, limit pairs.
ACQUIRE = (
    COMMON
    + r"""
local now = clock(ARGV[1])
local cap, lease, ttl, burst = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local budgets = budgets_from(6, now)
local in_flight = live_leases(now)
-- Run again after a reply was lost (a timeout): the first run's grant stands, once.
if redis.call('ZSCORE', leases, lease) then return snapshot(now, in_flight, {'1', '', '0'}) end
-- The cost cap first: once it is exhausted a send fails at once, whatever else would hold it.
for _, b in ipairs(budgets) do
  if b.capped and b.limit ~= nil and b.amount > 0 then
    local refusal = cap_refusal(b)
    if refusal == 'exhausted' then
      return snapshot(now, in_flight, {'x', b.name, redis.call('HGET', state, 'cap_used') or '0'})
    elseif refusal == 'wait' then
      return snapshot(now, in_flight, {'0', b.name, '-1'})
    end
  end
end
if in_flight >= cap then return snapshot(now, in_flight, {'0', 'concurrency', '-1'}) end
local pause = num(redis.call('HGET', state, 'paused_until'), 0) - now
if pause > NO_WAIT then return snapshot(now, in_flight, {'0', 'pause', str(pause)}) end
local longest, longest_name = 0, nil
for _, b in ipairs(budgets) do
  if b.limit ~= nil and not b.capped then
    local wait = wait_time(b, now, burst)
    if wait > NO_WAIT and wait > longest then longest, longest_name = wait, b.name end
  end
end
if longest_name then return snapshot(now, in_flight, {'0', longest_name, str(longest)}) end
for _, b in ipairs(budgets) do
  if b.limit ~= nil and b.capped then
    if b.amount > 0 then
      redis.call('HSET', state, 'cap_used', str(num(redis.call('HGET', state, 'cap_used'), 0) + b.amount))
      redis.call('HSET', state, 'cap_out', str(num(redis.call('HGET', state, 'cap_out'), 0) + b.amount))
      redis.call('HSET', cap_leases, lease, str(b.amount))
    end
  elseif b.limit ~= nil then take(b, now) end
end
redis.call('ZADD', leases, str(now + ttl), lease)
return snapshot(now, in_flight + 1, {'1', '', '0'})
"""
)

# ARGV: now, lease id ('' for none), outcome, granted at, then the budgets (amount: what the
# estimate over-reserved, to give back; negative: what it missed, to charge).
RELEASE = (
    COMMON
    + r"""
local now = clock(ARGV[1])
local lease, outcome, granted_at = ARGV[2], ARGV[3], tonumber(ARGV[4])
-- Run again after a reply was lost, or for a lease already expired: settle nothing twice.
if redis.call('ZREM', leases, lease) == 0 then return snapshot(now, live_leases(now), {}) end
cap_close(lease)  -- settled or not: the reservation is no longer open
for _, b in ipairs(budgets_from(5, now)) do
  if b.limit ~= nil and b.amount ~= 0 then
    if b.capped then
      local used = num(redis.call('HGET', state, 'cap_used'), 0)
      redis.call('HSET', state, 'cap_used', str(math.max(0, used - b.amount)))
    elseif b.paced then
      set_spent(b, now, math.max(0, spent(b, now) - b.amount))
    else
      day_expire(b, now)
      local slot = tostring(math.floor(granted_at / DAY_SLOT))
      local held = num(redis.call('HGET', day_amounts, slot), nil)
      if held ~= nil then
        local change = math.min(b.amount, held)
        redis.call('HSET', day_amounts, slot, str(held - change))
        redis.call('HSET', state, 'day_total', str(num(redis.call('HGET', state, 'day_total'), 0) - change))
      end
    end
  end
end
if outcome == 'ok' then redis.call('HSET', state, 'backoff', '0') end
return snapshot(now, live_leases(now), {})
"""
)

# ARGV: now, the penalty's id (one per 429 or outage seen), retry after ('' when the server named
# none), cool-down, maximum cool-down.
PENALISE = (
    COMMON
    + r"""
local now = clock(ARGV[1])
local id = ARGV[2]
local retry_after, cool_down, max_cool_down = num(ARGV[3], nil), tonumber(ARGV[4]), tonumber(ARGV[5])
-- Run again after a reply was lost (a timeout): the first run counted it, once.
redis.call('ZREMRANGEBYSCORE', penalty_ids, '-inf', str(now - PENALTY_IDS_KEPT))
if redis.call('ZADD', penalty_ids, 'NX', str(now), id) == 0 then
  return snapshot(now, live_leases(now), {})
end
redis.call('HINCRBY', state, 'penalties', 1)
local paused_until = num(redis.call('HGET', state, 'paused_until'), 0)
if retry_after ~= nil then
  redis.call('HSET', state, 'paused_until', str(math.max(paused_until, now + retry_after)))
elseif now >= paused_until then  -- sent before a hold began, answered while it lasts: one wave
  local backoff = num(redis.call('HGET', state, 'backoff'), 0)
  if backoff > 0 then backoff = math.min(max_cool_down, backoff * 2) else backoff = cool_down end
  redis.call('HSET', state, 'backoff', str(backoff), 'paused_until', str(now + backoff))
end
return snapshot(now, live_leases(now), {})
"""
)

# ARGV: now, burst seconds, then per announced limit: name, window, paced, limit (0: forget
# the one stored), remaining ('' when not announced). An announced limit above the user's own is passed only to replace
# a lower one stored before, with no remaining.
OBSERVE = (
    COMMON
    + r"""
local now = clock(ARGV[1])
local burst = tonumber(ARGV[2])
local changed = 0
local i = 3
while ARGV[i] do
  local b = {name = ARGV[i], window = tonumber(ARGV[i + 1]), paced = ARGV[i + 2] == '1',
             limit = tonumber(ARGV[i + 3])}
  local remaining = num(ARGV[i + 4], nil)
  local new = num(redis.call('HGET', state, 'ann:' .. b.name), nil) ~= b.limit
  if b.limit <= 0 then  -- forget the one stored
    if redis.call('HDEL', state, 'ann:' .. b.name) == 1 then changed = 1 end
    new = false
  elseif new then
    redis.call('HSET', state, 'ann:' .. b.name, str(b.limit))
    changed = 1
  end
  if b.paced and b.limit > 0 then  -- the server told: no guess from 429s paces it any more
    redis.call('HDEL', state, 'found:' .. b.name, 'found_until:' .. b.name)
  end
  if new and remaining ~= nil and b.paced then  -- as the local limiter: when first learned
    -- what the server says it has counted, at most a full burst: never frees what is spent
    local used = spent(b, now)
    local said = math.min(b.limit - remaining, capacity(b, burst))
    if said > used then set_spent(b, now, said) end
  end
  i = i + 5
end
return snapshot(now, live_leases(now), {tostring(changed)})
"""
)

# ARGV: now, burst seconds, how long the pace holds, then the budget: name, window, paced, the
# pace found (0: lift it, the 429s proved to be noise), remaining ('' when unknown; '0' after a
# 429: the server's budget is empty now). Stored apart from what a provider announced, and
# until `now` + how long it holds: the process that found it stores it again as it changes,
# or before it runs out while it still holds it.
LEARN = (
    COMMON
    + r"""
local now = clock(ARGV[1])
local burst, hold = tonumber(ARGV[2]), tonumber(ARGV[3])
local b = {name = ARGV[4], window = tonumber(ARGV[5]), paced = ARGV[6] == '1',
           limit = tonumber(ARGV[7])}
local remaining = num(ARGV[8], nil)
if b.limit <= 0 then
  redis.call('HDEL', state, 'found:' .. b.name, 'found_until:' .. b.name)
else
  redis.call('HSET', state, 'found:' .. b.name, str(b.limit), 'found_until:' .. b.name, str(now + hold))
  if remaining ~= nil then
    local used = spent(b, now)
    local said = math.min(b.limit - remaining, capacity(b, burst))
    if said > used then set_spent(b, now, said) end
  end
end
return snapshot(now, live_leases(now), {})
"""
)

# ARGV: now, lease seconds, then the lease ids this process holds: keeps them alive while it
# lives, so the leases of a process that died expire and free their slots.
RENEW = (
    COMMON
    + r"""
local expiry = str(clock(ARGV[1]) + tonumber(ARGV[2]))
for i = 3, #ARGV do redis.call('ZADD', leases, 'XX', expiry, ARGV[i]) end
return 0
"""
)
