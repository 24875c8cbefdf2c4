--[[
  Drop, in one small step, the issued records of a deleted pool: takes up to
  ARGV[2] codes off the purge list and removes their instances of that pool.

  KEYS[1] purge list   KEYS[2] issued hash
  ARGV[1] pool id   ARGV[2] step size
  Returns: codes left on the purge list (0 = done)
]]
local rcall = redis.call
--@include "common.lua"
local step = tonumber(ARGV[2])
local codes = rcall('LRANGE', KEYS[1], 0, step - 1)
for _, code in ipairs(codes) do
  local record = rcall('HGET', KEYS[2], code)
  if record then
    local keep = {}
    for _, inst in ipairs(split(record, RS)) do
      if split(inst, US)[1] ~= ARGV[1] then keep[#keep + 1] = inst end
    end
    if #keep == 0 then rcall('HDEL', KEYS[2], code) else rcall('HSET', KEYS[2], code, table.concat(keep, RS)) end
  end
end
rcall('LTRIM', KEYS[1], #codes, -1)
return rcall('LLEN', KEYS[1])
