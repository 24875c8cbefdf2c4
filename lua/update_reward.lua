--[[
  Change a reward; moving it to another pool updates both pools' used_by.

  KEYS[1] reward hash   KEYS[2] current pool's rewards set
  KEYS[3] new pool hash   KEYS[4] new pool's rewards set
  ARGV[1] reward id   ARGV[2] pool id the caller read (guards against a concurrent move)
  ARGV[3] new pool id   ARGV[4..] field, value pairs to set (name, hide_code,
  per_user_limit, metadata)
  Returns: 1 updated, -5 no such (new) pool, -6 no such reward, -8 moved meanwhile (read again)
]]
local rcall = redis.call
local current = rcall('HGET', KEYS[1], 'pool_id')
if not current then return -6 end
if current ~= ARGV[2] then return -8 end
if ARGV[3] ~= current then
  if rcall('EXISTS', KEYS[3]) == 0 then return -5 end
  rcall('SREM', KEYS[2], ARGV[1])
  rcall('SADD', KEYS[4], ARGV[1])
  rcall('HSET', KEYS[1], 'pool_id', ARGV[3])
end
if #ARGV > 3 then rcall('HSET', KEYS[1], unpack(ARGV, 4)) end
return 1
