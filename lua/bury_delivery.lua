--[[
  Give a delivery up: move it to the dead letters (newest first, capped; the oldest
  drop out with their records). The record stays in the deliveries hash, so an admin
  can see it and queue it again (requeue_dead.lua).

  KEYS[1] delivery queue (sorted set)   KEYS[2] deliveries hash   KEYS[3] attempts hash
  KEYS[4] dead letters list   KEYS[5] dead info hash
  ARGV[1] delivery id   ARGV[2] lease end (Unix ms, as claimed)
  ARGV[3] dead info (JSON: attempts, error, died_at)   ARGV[4] most dead letters kept
  Returns: 1 buried, 0 the lease was lost (nothing changed)
]]
local rcall = redis.call
local queue, records, attempts, dead, info = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id = ARGV[1]
local score = rcall('ZSCORE', queue, id)
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
rcall('ZREM', queue, id)
rcall('HDEL', attempts, id)
rcall('HSET', info, id, ARGV[3])
rcall('LPUSH', dead, id)
while rcall('LLEN', dead) > tonumber(ARGV[4]) do
  local oldest = rcall('RPOP', dead)
  rcall('HDEL', info, oldest)
  rcall('HDEL', records, oldest)
end
return 1
