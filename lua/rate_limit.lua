--[[
  Count one request of a credential in keys.rate_limit's fixed 1-second window and say
  whether it is over the role's limit: common.lua's over_limit, the same check issue.lua
  makes inline for the hand-out routes.

  KEYS[1] rate-limit counter (string)
  ARGV[1] requests per second the role allows (> 0)
  Returns: 0 within the limit, else the ms until the window ends (how long to wait)
]]
local rcall = redis.call
--@include "common.lua"

local wait = over_limit(KEYS[1], tonumber(ARGV[1]))
return wait and math.max(wait, 1) or 0
