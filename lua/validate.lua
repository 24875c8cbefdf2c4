--[[
  Tell a point of sale what a presented code is, changing nothing.

  KEYS[1] issued hash   KEYS[2] the code's code index bucket   KEYS[3] index uploads hash
  ARGV[1] code   ARGV[2] now
  ARGV[3] pool hash template   ARGV[4] available list template (keys.py, "\0" = pool id)
  ARGV[5] CRC-32 of the code (codepool.store.codeindex)
  Returns: {status, pool_id, instance status, assigned_time, redeemed_time, user_id,
            reward_id, purchase_id, hold_expires_at ("" not held)} for an issued code,
           {-11, pool_id} or {-10} else.
  status: 1 valid (an assigned instance, pool not expired), -2 pool expired,
          -12 already redeemed (every instance), -11 not issued, -10 unknown code
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local code, now, pool_t, avail_t = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local ix = cx_for({map = KEYS[3], bucket = KEYS[2], pool_t = pool_t, avail_t = avail_t}, tonumber(ARGV[5]))

local record = rcall('HGET', KEYS[1], code)
if not record then return not_issued_or_unknown(ix, code) end

local expired_one, redeemed_one = nil, nil
for _, inst in ipairs(parse_record(record)) do
  local pool_key = fill(pool_t, inst.pool)
  if rcall('EXISTS', pool_key) == 1 then  -- a deleted pool's records are being purged
    if inst.status == 'a' then
      if not expired(pool_key, now) then
        local out = describe(1, inst)
        out[9] = inst.hold
        return out
      end
      expired_one = expired_one or inst
    else
      redeemed_one = inst
    end
  end
end
if expired_one then
  local out = describe(-2, expired_one)
  out[9] = expired_one.hold
  return out
end
if redeemed_one then return describe(-12, redeemed_one) end
return not_issued_or_unknown(ix, code)
