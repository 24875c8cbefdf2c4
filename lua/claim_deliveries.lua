--[[
  Take up to N due deliveries for one worker. Each is leased: its due time moves to the
  end of the lease, so if the worker vanishes mid-send another takes it over then
  (at-least-once); while the lease runs no other worker can take it. Taking counts an
  attempt.

  KEYS[1] delivery queue (sorted set)   KEYS[2] deliveries hash   KEYS[3] attempts hash
  ARGV[1] now (Unix ms)   ARGV[2] lease end (Unix ms)   ARGV[3] most to take
  Returns: flat {delivery id, attempt number (1 = first), record (JSON), ...}
]]
local rcall = redis.call
local queue, records, attempts = KEYS[1], KEYS[2], KEYS[3]
local out = {}
for _, id in ipairs(rcall('ZRANGEBYSCORE', queue, '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))) do
  local record = rcall('HGET', records, id)
  if record then
    rcall('ZADD', queue, ARGV[2], id)
    out[#out + 1] = id
    out[#out + 1] = rcall('HINCRBY', attempts, id, 1)
    out[#out + 1] = record
  else
    rcall('ZREM', queue, id)  -- its record is gone (dropped dead letter): nothing to send
  end
end
return out
