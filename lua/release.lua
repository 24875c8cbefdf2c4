--[[
  Put an assigned, unredeemed instance back: a checkout that failed. The most recently
  handed-out assigned instance of the code goes back to the end of its pool's
  available list; the user's hold and per-user count are given back.

  KEYS[1] issued hash   KEYS[2] the code's code index bucket   KEYS[3] events stream
  KEYS[4] outbox stream   KEYS[5] project webhook hash   KEYS[6] index uploads hash
  ARGV[1] code   ARGV[2] now   ARGV[3] events maxlen
  ARGV[4] pool hash template   ARGV[5] available list template   ARGV[6] pool log template
  ARGV[7] user codes template   ARGV[8] reward users template  (keys.py, "\0" = the id)
  ARGV[9] user events template   ARGV[10] user events maxlen
  ARGV[11] per-minute counters template of now's UTC day, ARGV[12] of the day before
  (keys.pool_stats, "\0" = pool id): the release is counted, empty-soon alerts re-armed
  ARGV[13] CRC-32 of the code (codepool.store.codeindex): its index entry is pointed at
  where it goes back (cx_point in includes/common.lua)
  Returns: like validate.lua plus the pool's available count as element 9 and, for
  status 1, the position the code now holds in the pool's available list as element 10
  (see issue.lua: positions tell a restore whether a snapshot holds this release), and
  element 11 Redis's clock (TIME) in microseconds, for the journal;
  status 1 released (the instance as it was), -12 already redeemed, -11 not issued,
  -10 unknown code
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local code, now, maxlen = ARGV[1], ARGV[2], ARGV[3]
local pool_t, avail_t, log_t, user_t, reward_users_t = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local user_events_t, user_maxlen = ARGV[9], ARGV[10]
local emit = emitter(KEYS[3], maxlen, KEYS[4], KEYS[5])
local ix = cx_for({map = KEYS[6], bucket = KEYS[2], pool_t = pool_t, avail_t = avail_t}, tonumber(ARGV[13]))

local record = rcall('HGET', KEYS[1], code)
if not record then return not_issued_or_unknown(ix, code) end

local instances = parse_record(record)
local pick, redeemed_one = nil, nil
for i, inst in ipairs(instances) do
  if rcall('EXISTS', fill(pool_t, inst.pool)) == 1 then
    if inst.status == 'a' then pick = i else redeemed_one = inst end
  end
end
if not pick then
  if redeemed_one then return describe(-12, redeemed_one) end
  return not_issued_or_unknown(ix, code)
end

local inst = table.remove(instances, pick)
if #instances == 0 then rcall('HDEL', KEYS[1], code) else rcall('HSET', KEYS[1], code, join_record(instances)) end
-- A held instance goes too: its entry in the holds set is only a hint (reap_holds.lua).
local t = {pool = pool_t, avail = avail_t, log = log_t, user = user_t, reward_users = reward_users_t,
           user_events = user_events_t, user_maxlen = user_maxlen, stats = ARGV[11], ix = ix}
local available, position = give_back(emit, t, code, inst, now)
local pool_key = fill(pool_t, inst.pool)
rearm(pool_key, available)
rearm_soon(pool_key, fill(ARGV[11], inst.pool), fill(ARGV[12], inst.pool), now, available)
local out = describe(1, inst)
out[9] = available
out[10] = position
out[11] = redis_us()
return out
