--[[
  Burn one assigned instance of a presented code, exactly once.

  KEYS[1] issued hash   KEYS[2] the code's code index bucket   KEYS[3] events stream
  KEYS[4] outbox stream   KEYS[5] project webhook hash   KEYS[6] index uploads hash
  ARGV[1] code   ARGV[2] now   ARGV[3] events maxlen
  ARGV[4] pool hash template   ARGV[5] available list template (keys.py, "\0" = pool id)
  ARGV[6] user events template (keys.user_events, "\0" = user id)   ARGV[7] its maxlen
  ARGV[8] per-minute counters template of now's UTC day (keys.pool_stats, "\0" = pool id)
  ARGV[9] CRC-32 of the code (codepool.store.codeindex)
  Returns: like validate.lua; status 1 = redeemed now (the instance, now 'redeemed'),
  -2 pool expired (nothing changed), -12 already redeemed (the latest redeemed
  instance, with its redeemed_time), -11 not issued, -10 unknown code; status 1 adds
  element 9: the pool's `redeemed` count after this redeem (it only ever grows), which
  tells a restore whether a snapshot already holds this redeem (codepool.durability),
  and element 10: Redis's clock (TIME) in microseconds, for the journal.
  A held instance is confirmed by its redeem (its hold_expires_at is dropped).
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local code, now, maxlen, pool_t, avail_t = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local user_events_t, user_maxlen = ARGV[6], ARGV[7]
local stats_t = ARGV[8]
local ix = cx_for({map = KEYS[6], bucket = KEYS[2], pool_t = pool_t, avail_t = avail_t}, tonumber(ARGV[9]))
local emit = emitter(KEYS[3], maxlen, KEYS[4], KEYS[5])

local record = rcall('HGET', KEYS[1], code)
if not record then return not_issued_or_unknown(ix, code) end

local instances = parse_record(record)
local expired_one, redeemed_one = nil, nil
for _, inst in ipairs(instances) do
  local pool_key = fill(pool_t, inst.pool)
  if rcall('EXISTS', pool_key) == 1 then
    if inst.status == 'a' then
      if not expired(pool_key, now) then
        -- A redeem also ends a hold (the hand-out is final; the reaper leaves it).
        inst.status, inst.rt, inst.hold = 'r', now, ''
        rcall('HSET', KEYS[1], code, join_record(instances))
        rcall('HINCRBY', pool_key, 'assigned', -1)
        local seq = rcall('HINCRBY', pool_key, 'redeemed', 1)
        count_stats(fill(stats_t, inst.pool), now, STATS_REDEEMED, 1)
        local fields = {'type', 'VOUCHER_USED', 'time', now, 'code', code, 'pool_id', inst.pool,
                        'user_id', inst.user, 'reward_id', inst.reward, 'purchase_id', inst.purchase}
        local id = emit(fields)
        if inst.user ~= '' then add_user_event(fill(user_events_t, inst.user), user_maxlen, id, fields) end
        local out = describe(1, inst)
        out[9] = seq
        out[10] = redis_us()
        return out
      end
      expired_one = expired_one or inst
    elseif not redeemed_one or tonumber(inst.rt) > tonumber(redeemed_one.rt) then
      redeemed_one = inst
    end
  end
end
if expired_one then return describe(-2, expired_one) end
if redeemed_one then return describe(-12, redeemed_one) end
return not_issued_or_unknown(ix, code)
