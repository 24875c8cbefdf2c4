--[[
  Helpers shared by the scripts; scripts.py pastes this file where a script says
  --@include "common.lua". Needs `rcall` defined by the including script.
]]
local US, RS = '\31', '\30'

-- Plain split that keeps empty fields (gmatch with '*' does not, on Lua 5.1).
local function split(s, sep)
  local parts, from = {}, 1
  while true do
    local at = string.find(s, sep, from, true)
    if not at then parts[#parts + 1] = string.sub(s, from); return parts end
    parts[#parts + 1] = string.sub(s, from, at - 1)
    from = at + 1
  end
end

-- Thresholds above `available` are armed again; a refill re-arms what issuing spent.
local function rearm(pool, available)
  local thresholds = rcall('HGET', pool, 'thresholds') or ''
  local armed = {}
  for t in string.gmatch(thresholds, '[^,]+') do
    if available > tonumber(t) then armed[#armed + 1] = t end
  end
  rcall('HSET', pool, 'armed', table.concat(armed, ','), 'exhausted_armed', available > 0 and '1' or '0')
end

-- Append to the project's event stream, trimmed approximately (cheap) to maxlen.
local function add_event(stream, maxlen, fields)
  return rcall('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(fields))
end
