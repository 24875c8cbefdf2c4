--[[
  Delete a reward. Codes already handed out keep their reward id in their records.

  KEYS[1] rewards set   KEYS[2] reward hash   KEYS[3] pool rewards set   KEYS[4] reward users hash
  ARGV[1] reward id   ARGV[2] pool id the caller read
  Returns: 1 deleted, -6 no such reward, -8 moved meanwhile (read again)
]]
local rcall = redis.call
local current = rcall('HGET', KEYS[2], 'pool_id')
if not current then return -6 end
if current ~= ARGV[2] then return -8 end
rcall('SREM', KEYS[1], ARGV[1])
rcall('SREM', KEYS[3], ARGV[1])
rcall('UNLINK', KEYS[2], KEYS[4])
return 1
