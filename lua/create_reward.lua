--[[
  Create a reward that draws from an existing pool.

  KEYS[1] rewards set   KEYS[2] reward hash   KEYS[3] pool hash   KEYS[4] pool rewards set
  ARGV[1] reward id   ARGV[2] pool id   ARGV[3] name   ARGV[4] hide_code (0|1)
  ARGV[5] per_user_limit ("" none)   ARGV[6] metadata (JSON)   ARGV[7] created_at
  Returns: 1 created, -2 id taken, -5 no such pool
]]
local rcall = redis.call
if rcall('EXISTS', KEYS[3]) == 0 then return -5 end
if rcall('EXISTS', KEYS[2]) == 1 then return -2 end
rcall('HSET', KEYS[2], 'id', ARGV[1], 'pool_id', ARGV[2], 'name', ARGV[3], 'hide_code', ARGV[4],
      'per_user_limit', ARGV[5], 'metadata', ARGV[6], 'created_at', ARGV[7])
rcall('SADD', KEYS[1], ARGV[1])
rcall('SADD', KEYS[4], ARGV[1])
return 1
