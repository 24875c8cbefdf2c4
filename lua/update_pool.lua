--[[
  Change a pool's name, thresholds, notify or expiry. Fields passed as "" are kept;
  "\0" clears expires_at.

  KEYS[1] pool names hash   KEYS[2] pool hash   KEYS[3] available list
  KEYS[4] the pool's per-minute counters of now's UTC day   KEYS[5] of the day before
  ARGV[1] pool id   ARGV[2] new name ("" keep)   ARGV[3] thresholds ("" keep, "-" none)
  ARGV[4] notify JSON ("" keep)   ARGV[5] expires_at ("" keep, "-" none)
  ARGV[6] empty-soon thresholds in seconds, ascending ("" keep, "-" none)   ARGV[7] now
  Returns: 1 updated, -1 name taken, -5 no such pool
]]
local rcall = redis.call
--@include "common.lua"
local pool = KEYS[2]
local old = rcall('HGET', pool, 'name')
if not old then return -5 end
if ARGV[2] ~= '' and ARGV[2] ~= old then
  if rcall('HSETNX', KEYS[1], ARGV[2], ARGV[1]) == 0 then return -1 end
  rcall('HDEL', KEYS[1], old)
  rcall('HSET', pool, 'name', ARGV[2])
end
if ARGV[3] ~= '' then
  rcall('HSET', pool, 'thresholds', ARGV[3] == '-' and '' or ARGV[3])
  -- A threshold already at or above the stock is not a crossing: it stays quiet
  -- until a refill lifts the stock above it.
  rearm(pool, rcall('LLEN', KEYS[3]))
end
if ARGV[6] ~= '' then
  local soon = ARGV[6] == '-' and '' or ARGV[6]
  -- As for thresholds: one the forecast is already within is not a crossing; armed
  -- are those the forecast is above (all while the rate is 0).
  rcall('HSET', pool, 'soon', soon, 'soon_armed', '')
  rearm_soon(pool, KEYS[4], KEYS[5], ARGV[7], rcall('LLEN', KEYS[3]))
end
if ARGV[4] ~= '' then rcall('HSET', pool, 'notify', ARGV[4]) end
if ARGV[5] ~= '' then rcall('HSET', pool, 'expires_at', ARGV[5] == '-' and '' or ARGV[5]) end
return 1
