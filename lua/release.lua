--[[
  Put an assigned, unredeemed instance back: a checkout that failed. The most recently
  handed-out assigned instance of the code goes back to the end of its pool's
  available list; the user's hold and per-user count are given back.

  KEYS[1] issued hash   KEYS[2] pools set   KEYS[3] events stream
  KEYS[4] outbox stream   KEYS[5] project webhook hash
  ARGV[1] code   ARGV[2] now   ARGV[3] events maxlen
  ARGV[4] pool hash template   ARGV[5] available list template   ARGV[6] pool log template
  ARGV[7] user codes template   ARGV[8] reward users template  (keys.py, "\0" = the id)
  ARGV[9] per-minute counters template of now's UTC day, ARGV[10] of the day before
  (keys.pool_stats, "\0" = pool id): the release is counted, empty-soon alerts re-armed
  Returns: like validate.lua plus the pool's available count as element 9 and, for
  status 1, the position the code now holds in the pool's available list as element 10
  (see issue.lua: positions tell a restore whether a snapshot holds this release);
  status 1 released (the instance as it was), -12 already redeemed, -11 not issued,
  -10 unknown code
]]
local rcall = redis.call
--@include "common.lua"
local code, now, maxlen = ARGV[1], ARGV[2], ARGV[3]
local pool_t, avail_t, log_t, user_t, reward_users_t = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local emit = emitter(KEYS[3], maxlen, KEYS[4], KEYS[5])

local record = rcall('HGET', KEYS[1], code)
if not record then return not_issued_or_unknown(KEYS[2], avail_t, code) end

local instances = parse_record(record)
local pick, redeemed_one = nil, nil
for i, inst in ipairs(instances) do
  if rcall('EXISTS', fill(pool_t, inst.pool)) == 1 then
    if inst.status == 'a' then pick = i else redeemed_one = inst end
  end
end
if not pick then
  if redeemed_one then return describe(-12, redeemed_one) end
  return not_issued_or_unknown(KEYS[2], avail_t, code)
end

local inst = table.remove(instances, pick)
if #instances == 0 then rcall('HDEL', KEYS[1], code) else rcall('HSET', KEYS[1], code, join_record(instances)) end
local pool_key, avail = fill(pool_t, inst.pool), fill(avail_t, inst.pool)
rcall('RPUSH', avail, code)
-- Keep log and user list equal to what is handed out (see records.walk in Python).
rcall('LREM', fill(log_t, inst.pool), -1, code)
if inst.user ~= '' then
  rcall('LREM', fill(user_t, inst.user), -1, code)
  local held = fill(reward_users_t, inst.reward)
  if inst.reward ~= '' and tonumber(rcall('HGET', held, inst.user) or '0') > 0 then
    rcall('HINCRBY', held, inst.user, -1)
  end
end
rcall('HINCRBY', pool_key, 'assigned', -1)
local available = rcall('LLEN', avail)
rearm(pool_key, available)
count_stats(fill(ARGV[9], inst.pool), now, STATS_RELEASED, 1)
rearm_soon(pool_key, fill(ARGV[9], inst.pool), fill(ARGV[10], inst.pool), now, available)
emit({'type', 'VOUCHER_RELEASED', 'time', now, 'code', code, 'pool_id', inst.pool,
      'user_id', inst.user, 'reward_id', inst.reward, 'purchase_id', inst.purchase})
local out = describe(1, inst)
out[9] = available
out[10] = tonumber(rcall('HGET', pool_key, 'popped') or '0') + available - 1
return out
