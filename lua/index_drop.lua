--[[
  Take one upload's entries out of code index buckets (an upload that failed), and
  forget its number once the caller has passed every bucket it touched.

  KEYS[1] index uploads hash
  ARGV[1] bucket key template (keys.code_index, "\0" = bucket)   ARGV[2] upload number
  ARGV[3..] bucket numbers
  Returns: the number of entries removed
]]
local rcall = redis.call
--@include "common.lua"
local u = be(tonumber(ARGV[2]), 3)
local removed = 0
for i = 3, #ARGV do
  local key = fill(ARGV[1], ARGV[i])
  local s = rcall('GET', key)
  if s then
    local kept, from, keep_from = {}, 1, 1
    while true do
      local at = string.find(s, u, from, true)
      if not at then break end
      if (at - 1) % ENTRY_W == 3 then
        kept[#kept + 1] = string.sub(s, keep_from, at - 4)
        keep_from = at - 3 + ENTRY_W
        from = keep_from
        removed = removed + 1
      else
        from = at + 1
      end
    end
    if keep_from > 1 then
      kept[#kept + 1] = string.sub(s, keep_from)
      cx_put(key, table.concat(kept))
    end
  end
end
rcall('HDEL', KEYS[1], ARGV[2])
return removed
