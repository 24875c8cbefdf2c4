--[[
  Create a pool; its name must be free within the project.

  KEYS[1] pool names hash   KEYS[2] pools set   KEYS[3] pool hash
  ARGV[1] pool id   ARGV[2] name   ARGV[3] created_at   ARGV[4] expires_at ("" none)
  ARGV[5] thresholds (comma separated, "" none)   ARGV[6] notify (JSON text)
  ARGV[7] empty-soon alert thresholds in seconds (comma separated, ascending, "" none)
  Returns: 1 created, -1 name taken, -2 id taken
]]
local rcall = redis.call
if rcall('EXISTS', KEYS[3]) == 1 then return -2 end
if rcall('HSETNX', KEYS[1], ARGV[2], ARGV[1]) == 0 then return -1 end
rcall('SADD', KEYS[2], ARGV[1])
-- Nothing is available yet, so no threshold is armed; the first upload arms them.
-- Empty-soon alerts are armed: no rate yet, so no forecast of running dry.
rcall('HSET', KEYS[3], 'id', ARGV[1], 'name', ARGV[2], 'created_at', ARGV[3],
      'expires_at', ARGV[4], 'thresholds', ARGV[5], 'notify', ARGV[6],
      'total', 0, 'assigned', 0, 'redeemed', 0, 'armed', '', 'exhausted_armed', '0',
      'soon', ARGV[7] or '', 'soon_armed', ARGV[7] or '')
return 1
