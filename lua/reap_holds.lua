--[[
  Give back the holds of one project that expired: one atomic step per batch.

  The holds set (keys.holds) scores each code string with the earliest hold_expires_at
  of its held instances, or earlier: it is a hint. issue.lua adds to it (ZADD LT);
  confirm, redeem and release never touch it. So each due code is looked up here: its
  held, assigned instances whose hold has ended go back to their pool's available list
  exactly as release.lua gives one back (give_back in common.lua) with a
  VOUCHER_RELEASED event {"reason": "hold_expired"}; the code is then scored again with
  the next hold still running, or leaves the set. A confirm and this step are each one
  script: a hold is either confirmed or released, never both.

  KEYS[1] holds zset   KEYS[2] issued hash   KEYS[3] events stream
  KEYS[4] outbox stream   KEYS[5] project webhook hash   KEYS[6] code index uploads hash
  ARGV[1] now   ARGV[2] batch (most codes looked at)   ARGV[3] events maxlen
  ARGV[4] pool hash template   ARGV[5] available list template   ARGV[6] pool log template
  ARGV[7] user codes template   ARGV[8] reward users template
  ARGV[9] user events template  (keys.py, "\0" = the id)   ARGV[10] user events maxlen
  ARGV[11] per-minute counters template of now's UTC day, ARGV[12] of the day before
  ARGV[13] code index bucket template (keys.code_index, "\0" = bucket): a code given
  back is pointed at in the index (its CRC-32 computed here)
  (keys.pool_stats, "\0" = pool id): each give-back is counted as released
  Returns: {codes looked at, Redis's clock (TIME) in microseconds, then per instance given back: code, pool_id,
            assigned_time, user_id, reward_id, purchase_id, position it now holds in
            the pool's available list}  (what the journal's release record needs)
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local now, batch, maxlen = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local t = {pool = ARGV[4], avail = ARGV[5], log = ARGV[6], user = ARGV[7], reward_users = ARGV[8],
           user_events = ARGV[9], user_maxlen = ARGV[10], stats = ARGV[11]}
local holds, issued = KEYS[1], KEYS[2]
local emit = emitter(KEYS[3], maxlen, KEYS[4], KEYS[5])
local at_now = tonumber(now)

local due = rcall('ZRANGEBYSCORE', holds, '-inf', now, 'LIMIT', 0, batch)
local out = {#due, redis_us()}
local touched = {}  -- pool id -> available count after its last give-back
local ix_uploads = {}  -- the code index's uploads read so far (cx_upload)
for _, code in ipairs(due) do
  local record = rcall('HGET', issued, code)
  local next_due, next_hold = nil, nil  -- (the text, scored exactly as issue.lua did)
  if record then
    local kept, gone = {}, {}
    for _, inst in ipairs(parse_record(record)) do
      local ended = inst.status == 'a' and inst.hold ~= '' and tonumber(inst.hold) <= at_now
      if ended and rcall('EXISTS', fill(t.pool, inst.pool)) == 1 then
        gone[#gone + 1] = inst
      else
        kept[#kept + 1] = inst
        -- (an ended hold of a deleted pool is left to purge_issued.lua)
        if inst.status == 'a' and inst.hold ~= '' and not ended then
          local h = tonumber(inst.hold)
          if not next_due or h < next_due then next_due, next_hold = h, inst.hold end
        end
      end
    end
    if #gone > 0 then
      if #kept == 0 then rcall('HDEL', issued, code) else rcall('HSET', issued, code, join_record(kept)) end
      for _, inst in ipairs(gone) do
        t.ix = cx_for({map = KEYS[6], pool_t = t.pool, avail_t = t.avail, uploads = ix_uploads}, crc32(code), ARGV[13])
        local available, position = give_back(emit, t, code, inst, now, {'reason', 'hold_expired'})
        touched[inst.pool] = available
        for _, v in ipairs({code, inst.pool, inst.at, inst.user, inst.reward, inst.purchase, position}) do
          out[#out + 1] = v
        end
      end
    end
  end
  if next_due then
    rcall('ZADD', holds, next_hold, code)
  else
    rcall('ZREM', holds, code)
  end
end
for pool_id in pairs(touched) do
  local avail, pool_key = rcall('LLEN', fill(t.avail, pool_id)), fill(t.pool, pool_id)
  rearm(pool_key, avail)
  rearm_soon(pool_key, fill(ARGV[11], pool_id), fill(ARGV[12], pool_id), now, avail)
end
return out
