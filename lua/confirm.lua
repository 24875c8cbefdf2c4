--[[
  Make a held hand-out final: the code's held instance (the one whose hold ends first,
  if several) loses its hold_expires_at, so the hold reaper (reap_holds.lua) leaves it
  assigned. One atomic step, as the reaper's release is one: a hold is either confirmed
  or released, never both. A hold past its expiry that the reaper has not released yet
  is still held and can be confirmed. Its entry in the holds set stays: it is only a
  hint, dropped when it comes due.

  KEYS[1] issued hash   KEYS[2] the code's code index bucket   KEYS[3] index uploads hash
  ARGV[1] code   ARGV[2] pool hash template   ARGV[3] available list template
  ARGV[4] CRC-32 of the code (codepool.store.codeindex)
  Returns: like validate.lua (element 9 on status 1: Redis's clock (TIME) in
  microseconds, for the journal); status 1 confirmed (the instance),
  -14 assigned but not held (never held, or confirmed already), -12 already redeemed,
  -11 not issued, -10 unknown code
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local code, pool_t, avail_t = ARGV[1], ARGV[2], ARGV[3]
local ix = cx_for({map = KEYS[3], bucket = KEYS[2], pool_t = pool_t, avail_t = avail_t}, tonumber(ARGV[4]))

local record = rcall('HGET', KEYS[1], code)
if not record then return not_issued_or_unknown(ix, code) end

local instances = parse_record(record)
local pick, assigned_one, redeemed_one = nil, nil, nil
for _, inst in ipairs(instances) do
  if rcall('EXISTS', fill(pool_t, inst.pool)) == 1 then
    if inst.status ~= 'a' then
      redeemed_one = inst
    elseif inst.hold == '' then
      assigned_one = inst
    elseif not pick or tonumber(inst.hold) < tonumber(pick.hold) then
      pick = inst
    end
  end
end
if pick then
  pick.hold = ''
  rcall('HSET', KEYS[1], code, join_record(instances))
  local out = describe(1, pick)
  out[9] = redis_us()
  return out
end
if assigned_one then return describe(-14, assigned_one) end
if redeemed_one then return describe(-12, redeemed_one) end
return not_issued_or_unknown(ix, code)
