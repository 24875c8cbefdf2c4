--[[
  Queue a dead delivery again, due now, with a fresh count of attempts.

  KEYS[1] dead letters list   KEYS[2] dead info hash   KEYS[3] deliveries hash
  KEYS[4] attempts hash   KEYS[5] delivery queue (sorted set)
  ARGV[1] delivery id   ARGV[2] now (Unix ms)
  Returns: 1 queued, -1 no such dead delivery
]]
local rcall = redis.call
local id = ARGV[1]
if rcall('HEXISTS', KEYS[3], id) == 0 or rcall('HDEL', KEYS[2], id) == 0 then return -1 end
rcall('LREM', KEYS[1], 1, id)
rcall('HDEL', KEYS[4], id)
rcall('ZADD', KEYS[5], ARGV[2], id)
return 1
