--[[
  Delete a pool unless a reward draws from it. Its available codes go at once
  (UNLINK frees them off the main thread); its hand-out log is renamed to
  KEYS[7] so purge_issued.lua can drop the issued records in small steps.

  KEYS[1] pool names hash   KEYS[2] pools set   KEYS[3] pool hash
  KEYS[4] available list    KEYS[5] pool log    KEYS[6] pool rewards set
  KEYS[7] purge list (where the log goes)   KEYS[8] project stored count (its codes leave it)
  ARGV[1] pool id
  Returns: 1 deleted (purge list holds the issued codes to clean), -1 in use, -5 no such pool
]]
local rcall = redis.call
local name = rcall('HGET', KEYS[3], 'name')
if not name then return -5 end
if rcall('SCARD', KEYS[6]) > 0 then return -1 end
rcall('HDEL', KEYS[1], name)
rcall('DECRBY', KEYS[8], tonumber(rcall('HGET', KEYS[3], 'total') or '0'))
rcall('SREM', KEYS[2], ARGV[1])
rcall('UNLINK', KEYS[3], KEYS[4], KEYS[6])
if rcall('EXISTS', KEYS[5]) == 1 then rcall('RENAME', KEYS[5], KEYS[7]) end
return 1
