--[[
  Make a validated upload available: move (a slice of) the staging list onto the end
  of the pool's available list, count it into `total` and re-arm low-stock alerts.
  Called repeatedly until it returns 0 remaining, so a 20-million-code refill never
  blocks Redis for long; counters are exact after every call. When the pool has
  nothing available, the staging list simply becomes the available list (O(1)).

  KEYS[1] pool hash   KEYS[2] available list   KEYS[3] staging list
  KEYS[4] the pool's per-minute counters of now's UTC day   KEYS[5] of the day before
  ARGV[1] slice size   ARGV[2] upload id   ARGV[3] now (re-arms empty-soon alerts)
  Returns: {remaining, total, available}, or {-5} when the pool is gone (staging dropped)
]]
local rcall = redis.call
--@include "common.lua"
local pool, avail, staging = KEYS[1], KEYS[2], KEYS[3]
local mark = 'committing:' .. ARGV[2]
if rcall('EXISTS', pool) == 0 then
  rcall('UNLINK', staging)
  return {-5}
end
-- The mark lets a restarted service finish a commit a crash interrupted.
rcall('HSET', pool, mark, staging)
rcall('PERSIST', staging)

local moved = 0
if rcall('LLEN', avail) == 0 then
  moved = rcall('LLEN', staging)
  if moved > 0 then rcall('RENAME', staging, avail) end
else
  local codes = rcall('LRANGE', staging, 0, tonumber(ARGV[1]) - 1)
  moved = #codes
  for i = 1, moved, 4000 do
    rcall('RPUSH', avail, unpack(codes, i, math.min(i + 3999, moved)))
  end
  if moved > 0 then rcall('LTRIM', staging, moved, -1) end
end

local total = rcall('HINCRBY', pool, 'total', moved)
local available = rcall('LLEN', avail)
if moved > 0 then
  rearm(pool, available)
  rearm_soon(pool, KEYS[4], KEYS[5], ARGV[3], available)
end
local remaining = rcall('LLEN', staging)
if remaining == 0 then rcall('HDEL', pool, mark) end
return {remaining, total, available}
