--[[
  Count one request of a credential in the current fixed 1-second window
  (keys.rate_limit). The first request of a window starts it: PEXPIRE 1000, so the
  window ends one second after its first request and the counter vanishes with it.
  The caller compares the count with the role's limit; issue.lua does the same inline.

  KEYS[1] rate-limit counter (string)
  ARGV    none
  Returns: {count, pttl}: requests in this window including this one, and the
  milliseconds until the window ends
]]
local rcall = redis.call
local count = rcall('INCR', KEYS[1])
if count == 1 then
  rcall('PEXPIRE', KEYS[1], 1000)
end
local pttl = rcall('PTTL', KEYS[1])
if pttl < 0 then
  -- A counter without a TTL (never expected) would refuse forever: restart its window.
  rcall('PEXPIRE', KEYS[1], 1000)
  pttl = 1000
end
return {count, pttl}
