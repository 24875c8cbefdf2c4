--[[
  Create a project record unless the id is taken.

  KEYS[1] project hash
  ARGV[1] id   ARGV[2] name   ARGV[3] created_at   ARGV[4] user_token_secret
  ARGV[5] webhook_secret
  Returns: 1 created, -1 id taken
]]
local rcall = redis.call
if rcall('EXISTS', KEYS[1]) == 1 then return -1 end
rcall('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'created_at', ARGV[3],
      'user_token_secret', ARGV[4], 'webhook_secret', ARGV[5])
return 1
