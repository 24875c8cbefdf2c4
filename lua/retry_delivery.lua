--[[
  An attempt failed: schedule the next one, if the caller still holds the lease (its
  due time is still the lease end the caller got). A worker whose lease ran out must
  not push back a delivery another worker has taken over.

  KEYS[1] delivery queue (sorted set)
  ARGV[1] delivery id   ARGV[2] lease end (Unix ms, as claimed)   ARGV[3] next attempt (Unix ms)
  Returns: 1 scheduled, 0 the lease was lost (nothing changed)
]]
local rcall = redis.call
local score = rcall('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
rcall('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
