--[[
  Rewrite code index buckets at their exact size: APPEND leaves a string room to grow
  (up to its length again), SET of the same bytes allocates just what they need.

  KEYS[1] index uploads hash (names the project's slot)
  ARGV[1] bucket key template (keys.code_index, "\0" = bucket)   ARGV[2..] bucket numbers
  Returns: the number of buckets rewritten
]]
local rcall = redis.call
--@include "common.lua"
local n = 0
for i = 2, #ARGV do
  local key = fill(ARGV[1], ARGV[i])
  local s = rcall('GET', key)
  if s then rcall('SET', key, s); n = n + 1 end
end
return n
