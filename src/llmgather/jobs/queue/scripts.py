"""The coordinator's Lua scripts: each looks at the task stream and acts on what it saw in one
atomic step, so no worker reads a task between the look and the act."""

from __future__ import annotations

# The last entry the consumer group handed to a worker: the entries after it no worker has
# read (XREADGROUP hands them out in order; a reclaim takes only ones handed out before).
_LAST_DELIVERED = r"""
local function last_delivered(tasks, group)
  local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', tasks)
  if not ok then return nil end  -- no stream: nothing to look at
  for _, g in ipairs(groups) do
    local fields = {}
    for i = 1, #g, 2 do fields[g[i]] = g[i + 1] end
    if fields['name'] == group then return fields['last-delivered-id'] end
  end
  return '0-0'  -- no group yet: nothing handed out
end
"""

_FIELD = r"""
local function field(entry_fields, name)
  for i = 1, #entry_fields, 2 do
    if entry_fields[i] == name then return entry_fields[i + 1] end
  end
  return nil
end
"""

# KEYS: the task stream, the job's set of enqueued ids, the job's results stream. ARGV: the
# job, the consumer group, the last result read. Deletes the job's tasks no worker has read
# and forgets they were enqueued. Replies with their item ids, then those of the job's tasks
# workers have taken and of the results not read yet: what is still worth waiting for (run
# twice, the second run finds nothing to withdraw and still tells what to wait for).
WITHDRAW = (
    _FIELD
    + _LAST_DELIVERED
    + r"""
local withdrawn, taken = {}, {}
local last = last_delivered(KEYS[1], ARGV[2])
if last ~= nil then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', last)) do
    if field(entry[2], 'job') == ARGV[1] then table.insert(taken, field(entry[2], 'id')) end
  end
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. last, '+')) do
    if field(entry[2], 'job') == ARGV[1] then
      local item = field(entry[2], 'id')
      redis.call('XDEL', KEYS[1], entry[1])
      redis.call('SREM', KEYS[2], item)
      table.insert(withdrawn, item)
    end
  end
end
for _, entry in ipairs(redis.call('XRANGE', KEYS[3], '(' .. ARGV[3], '+')) do
  table.insert(taken, field(entry[2], 'id'))
end
return {withdrawn, taken}
"""
)

# KEYS: the task stream, the job's results stream. ARGV: the job, the last result read.
# Replies with the item ids Redis holds for the job: its tasks (read by a worker or not: a
# task stays in the stream until its result is written) and the results not read yet.
ACCOUNTED_FOR = (
    _FIELD
    + r"""
local held = {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  if field(entry[2], 'job') == ARGV[1] then table.insert(held, field(entry[2], 'id')) end
end
for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '(' .. ARGV[2], '+')) do
  table.insert(held, field(entry[2], 'id'))
end
return held
"""
)
