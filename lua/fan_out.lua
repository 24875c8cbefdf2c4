--[[
  Turn one outbox entry into its deliveries and take it off the outbox, exactly once.

  A worker that took an entry over from a vanished one (XAUTOCLAIM) may run this for an
  entry already fanned out: the entry is then gone from the stream and nothing is
  queued twice.

  KEYS[1] outbox stream   KEYS[2] deliveries hash   KEYS[3] delivery queue (sorted set)
  ARGV[1] consumer group   ARGV[2] entry id   ARGV[3] due (Unix ms)
  ARGV[4..] pairs: delivery id, delivery record (JSON)
  Returns: the number of deliveries queued (0 when the entry was fanned out before)
]]
local rcall = redis.call
local outbox, group, entry = KEYS[1], ARGV[1], ARGV[2]
local queued = 0
if #rcall('XRANGE', outbox, entry, entry) > 0 then
  for i = 4, #ARGV, 2 do
    if rcall('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1]) == 1 then
      rcall('ZADD', KEYS[3], ARGV[3], ARGV[i])
      queued = queued + 1
    end
  end
end
rcall('XACK', outbox, group, entry)
rcall('XDEL', outbox, entry)
return queued
