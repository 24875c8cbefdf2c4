--[[
  Take, renew or give up a lease: a key naming its one holder, with a TTL, so that one
  process at a time does a job every process is ready to do (the hold reaper). A
  holder that dies stops renewing; another takes the lease once its TTL has run out.

  KEYS[1] lease key
  ARGV[1] holder token (unique per process)   ARGV[2] TTL in ms (0: give it up)
  Returns: 1 the caller holds the lease now (or gave it up), 0 another holds it
]]
local rcall = redis.call
local holder = rcall('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then
  if holder then rcall('DEL', KEYS[1]) end
  return 1
end
rcall('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
