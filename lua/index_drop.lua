--[[
  Take the entries of some uploads out of code index buckets (an upload that failed,
  or every upload of a deleted pool), and forget their numbers (the caller passes
  every bucket they touched; entries of a forgotten number answer nothing meanwhile).

  KEYS[1] index uploads hash
  ARGV[1] bucket key prefix (keys.code_index up to the bucket number)
  ARGV[2] upload numbers, comma separated   ARGV[3..] bucket numbers
  Returns: the number of entries removed
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local numbers, patterns = {}, {}
for u in string.gmatch(ARGV[2], '[^,]+') do
  numbers[#numbers + 1] = u
  patterns[#patterns + 1] = be(tonumber(u), 3)
end
local removed = 0
for i = 3, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  local s = rcall('GET', key)
  if s then
    -- Entry starts to drop, found at C speed (string.find, then the alignment checked).
    local drop = {}
    for _, u in ipairs(patterns) do
      local from = 1
      while true do
        local at = string.find(s, u, from, true)
        if not at then break end
        if (at - 1) % ENTRY_W == 3 then
          drop[#drop + 1] = at - 3
          from = at - 3 + ENTRY_W
        else
          from = at + 1
        end
      end
    end
    if #drop > 0 then
      table.sort(drop)
      local kept, keep_from = {}, 1
      for _, start in ipairs(drop) do
        kept[#kept + 1] = string.sub(s, keep_from, start - 1)
        keep_from = start + ENTRY_W
      end
      kept[#kept + 1] = string.sub(s, keep_from)
      cx_put(key, table.concat(kept))
      removed = removed + #drop
    end
  end
end
rcall('HDEL', KEYS[1], unpack(numbers))
return removed
