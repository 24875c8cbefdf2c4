--[[
  Count one request of a credential in its rate-limit window and say whether it is over
  the role's limit: common.lua's count_requests, the same count issue.lua makes for a
  whole batch on the hand-out routes.

  KEYS[1] the project's rate-limit windows (keys.rate_window: a prefix; the script
          appends Redis's current second)
  ARGV[1] requests per second the role allows (> 0)   ARGV[2] the credential (the field)
  Returns: 0 within the limit, else the ms until the window ends (how long to wait)
]]
local rcall = redis.call
--@include "common.lua"

local waits = count_requests(KEYS[1], rcall('TIME'), {ARGV[2]}, {tonumber(ARGV[1])})
return waits[1] or 0
