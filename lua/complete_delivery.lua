--[[
  A delivery arrived: forget it. Done whoever holds the lease now: the receiver has it,
  and a worker that took it over meanwhile finds nothing left to retry or bury.

  KEYS[1] delivery queue (sorted set)   KEYS[2] deliveries hash   KEYS[3] attempts hash
  ARGV[1] delivery id
  Returns: 1 forgotten, 0 it was not there
]]
local rcall = redis.call
local id = ARGV[1]
rcall('HDEL', KEYS[3], id)
rcall('HDEL', KEYS[2], id)
return rcall('ZREM', KEYS[1], id)
