--[[
  Look for a code in one slice of a pool's available list: the rest of the search
  validate/redeem/release leave undecided for long pools (see not_issued_or_unknown
  in includes/common.lua), a slice per call so Redis never blocks for long.

  Positions count from the pool's first code ever: position = index + popped, where
  popped (pool hash) grows by every code issue.lua pops from the left. Pops between
  two calls shift indices but not positions, so consecutive slices never skip a code.
  (Codes are only ever appended on the right.)

  KEYS[1] available list   KEYS[2] pool hash
  ARGV[1] code   ARGV[2] position to start at (-1: the current head)   ARGV[3] slice size
  Returns: {1, pool index} found, {0, next position} not in this slice, {-2} past the end
]]
local rcall = redis.call
local popped = tonumber(rcall('HGET', KEYS[2], 'popped') or '0')
local index = tonumber(ARGV[2]) - popped
if tonumber(ARGV[2]) < 0 or index < 0 then index = 0 end  -- those were popped: issued now
local codes = rcall('LRANGE', KEYS[1], index, index + tonumber(ARGV[3]) - 1)
if #codes == 0 then return {-2} end
local code = ARGV[1]
for i = 1, #codes do
  if codes[i] == code then return {1, index + i - 1} end
end
return {0, popped + index + #codes}
