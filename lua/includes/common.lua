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

-- Append to the project's event stream, trimmed approximately (cheap) to maxlen, under
-- a new id, or under `id` (a restore gives lost events back under ids it chose). A nil
-- maxlen does not trim: a restore writes the stream as it was; the next live event trims.
local function add_event(stream, maxlen, fields, id)
  if maxlen then return rcall('XADD', stream, 'MAXLEN', '~', maxlen, id or '*', unpack(fields)) end
  return rcall('XADD', stream, id or '*', unpack(fields))
end

-- The event in one user's own index (keys.user_events), written in the step that writes
-- the project event: a user's /events reads only this (and then the page's events by
-- id), never scans the project stream. One list item per event: its id and type joined
-- by US (`fields` start with 'type', <type>). Trimmed to the newest `maxlen`. Ids only:
-- a whole copy of each event cost ~2 us more per purchase in Redis (a 170-byte list
-- item instead of ~30) and ~120 bytes per event; a stream ~4.7 KB per user (Redis
-- 6.2's first stream node preallocates 4 KB). No-op for a nil/false key.
local function add_user_event(list, maxlen, id, fields)
  if not list then return end
  if rcall('RPUSH', list, id .. US .. fields[2]) > tonumber(maxlen) then
    rcall('LTRIM', list, -tonumber(maxlen), -1)
  end
end

-- Rate limits (keys.rate_window): a fixed window of one second of Redis's clock (TIME:
-- one clock for every host), one hash per project and second, one field per credential
-- counting its requests in that second. A batch of requests (issue.lua) is counted with
-- one HMGET and one HSET, whatever its size: a key per credential cost a SET NX PX (or
-- an INCR) per request, ~18k of the ~126k instructions of a purchase. Every request is
-- counted, refused ones too (a client that keeps hammering stays refused). The counters
-- are neither written to the AOF nor sent to replicas (REPL_NONE): they matter for one
-- second, and a failover at worst forgets one second's counts. fakeredis has no
-- set_repl; there it is skipped.
--   fields, limits: per ask (a request), its credential and its limit (a number > 0),
--   in request order; a credential may come several times. clock: TIME's reply.
--   Returns {k -> ms to wait} for the asks over their limit (the rest of the second, at
--   least 1).
-- Counts go back as text, the usual ones from this table (a literal: this file runs at
-- every script call): a number would be formatted by sprintf, ~2k instructions, more
-- than the HSET of it (loadtest/script_cost.py).
local COUNT_TEXT = {'1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12', '13', '14', '15',
                    '16', '17', '18', '19', '20', '21', '22', '23', '24', '25'}

-- A field longer than hash-max-ziplist-value (64), written with the counts: the window
-- is a hash table from its first write. A small listpack would be searched from end to
-- end for every field, and a project with a few hundred users a second never outgrows
-- one (under callgrind: ~33k more instructions a purchase than a hash table).
local WINDOW_PAD = '~pad~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~'

local function count_requests(prefix, clock, fields, limits)
  local window = prefix .. clock[1]
  local prior = rcall('HMGET', window, unpack(fields))
  local counts, at, flat, waits, wait = {}, {}, {WINDOW_PAD, ''}, {}, nil
  for k = 1, #fields do
    local field = fields[k]
    local c = counts[field]
    if c then
      c = c + 1
    else
      c = tonumber(prior[k] or '0') + 1
      flat[#flat + 1] = field
      flat[#flat + 1] = ''
      at[field] = #flat
    end
    counts[field] = c
    flat[at[field]] = COUNT_TEXT[c] or tostring(c)
    if c > limits[k] then
      wait = wait or math.max(1, 1000 - math.floor(tonumber(clock[2]) / 1000))
      waits[k] = wait
    end
  end
  if redis.set_repl then redis.set_repl(redis.REPL_NONE) end
  rcall('HSET', window, unpack(flat))
  -- Relative, as constant text: dies 2 s after the second's last request at the latest.
  rcall('PEXPIRE', window, '2000')
  if redis.set_repl then redis.set_repl(redis.REPL_ALL) end
  return waits
end

-- Whether a pool's notify JSON names anyone (emails or a webhook_url).
local function notify_has_targets(notify)
  if notify == '' then return false end
  local ok, n = pcall(cjson.decode, notify)
  -- Unreadable (never written so by the store): queue it; the worker logs the fault.
  if not ok or type(n) ~= 'table' then return true end
  return (type(n.emails) == 'table' and #n.emails > 0) or type(n.webhook_url) == 'string'
end

-- An event someone must be told about also goes into the project's outbox, in the same
-- atomic step that writes it: an alert is never lost, and never sent for an event that
-- was not written. Returns emit(fields, pool, id) -> event id; `fields` and `id` as for
-- add_event, starting with 'type', <type>; `pool` only for pool alerts: {key = pool
-- hash, name}. The project webhook is read at the first event of a script call, so a
-- call that writes no event pays nothing, and a bulk one pays one HMGET.
local function emitter(events, maxlen, outbox, webhook)
  local hook_url, hook_types
  return function(fields, pool, given_id)
    local id = add_event(events, maxlen, fields, given_id)
    if not hook_url then
      local h = rcall('HMGET', webhook, 'url', 'events')
      hook_url, hook_types = h[1] or '', {}
      for t in string.gmatch(h[2] or '', '[^,]+') do hook_types[t] = true end
    end
    local hook, notify, pool_name = '', '', ''
    if hook_types[fields[2]] then hook = hook_url end
    if pool then
      if pool.notify == nil then  -- read once per pool and call, however many alerts
        pool.notify = rcall('HGET', pool.key, 'notify') or ''
        if not notify_has_targets(pool.notify) then pool.notify = '' end
      end
      notify, pool_name = pool.notify, pool.name
    end
    if hook ~= '' or notify ~= '' then
      rcall('XADD', outbox, '*', 'event_id', id, 'hook', hook, 'notify', notify, 'pool_name', pool_name,
            unpack(fields))
    end
    return id
  end
end

-- Low-stock alerts of a pool whose `available` just fell: one POOL_LOW per armed
-- threshold at or above it, one POOL_EXHAUSTED at 0; each fires once, until a refill or
-- a release re-arms it (rearm). So a threshold is armed exactly while `available` is
-- above it, which a restore relies on. `pool` as for emit: {key = pool hash, name}.
-- Returns what fired: thresholds, and 'exhausted' for POOL_EXHAUSTED.
local function fire_alerts(emit, pool, pool_id, available, now)
  local fired = {}
  local armed = rcall('HGET', pool.key, 'armed') or ''
  if armed ~= '' then
    local still = {}
    for t in string.gmatch(armed, '[^,]+') do
      if available <= tonumber(t) then
        emit({'type', 'POOL_LOW', 'time', now, 'pool_id', pool_id, 'threshold', t, 'available', available},
             pool)
        fired[#fired + 1] = t
      else
        still[#still + 1] = t
      end
    end
    rcall('HSET', pool.key, 'armed', table.concat(still, ','))
  end
  if available == 0 and rcall('HGET', pool.key, 'exhausted_armed') == '1' then
    rcall('HSET', pool.key, 'exhausted_armed', '0')
    emit({'type', 'POOL_EXHAUSTED', 'time', now, 'pool_id', pool_id, 'available', 0}, pool)
    fired[#fired + 1] = 'exhausted'
  end
  return fired
end

-- A key name from a template keys.py made with "\0" where the id goes. Scripts that
-- learn an id from a record (the pool of a code) derive its keys this way; the
-- template carries the {project} hash tag, so the key is in the script's slot.
local function fill(template, id)
  local at = string.find(template, '\0', 1, true)
  return string.sub(template, 1, at - 1) .. id .. string.sub(template, at + 1)
end

-- Issued records: instances separated by RS; fields by US, in this order. An eighth
-- field, hold_expires_at, is there only while the instance is held (issue.lua with
-- hold_seconds; confirm.lua and redeem.lua drop it, reap_holds.lua releases it).
local function parse_record(record)
  local out = {}
  for _, raw in ipairs(split(record, RS)) do
    local f = split(raw, US)
    out[#out + 1] = {pool = f[1], status = f[2], at = f[3], rt = f[4], user = f[5], reward = f[6], purchase = f[7],
                     hold = f[8] or ''}
  end
  return out
end

local function join_record(instances)
  local parts = {}
  for i, inst in ipairs(instances) do
    local f = {inst.pool, inst.status, inst.at, inst.rt, inst.user, inst.reward, inst.purchase}
    if inst.hold ~= '' then f[8] = inst.hold end
    parts[i] = table.concat(f, US)
  end
  return table.concat(parts, RS)
end

-- Redis's clock in microseconds, as text. The journal keeps it with each change: one
-- clock for every host, so a restore orders the changes of many hosts the way Redis
-- made them (each host's own clock may be off). `t`: a TIME reply the script already
-- has (a script's commands all happen at one moment), else it is asked for.
local function redis_us(t)
  t = t or rcall('TIME')
  return t[1] .. string.format('%06d', tonumber(t[2]))
end

-- The answer validate/redeem/release give about one instance.
local function describe(code_status, inst)
  return {code_status, inst.pool, inst.status == 'r' and 'redeemed' or 'assigned', inst.at, inst.rt,
          inst.user, inst.reward, inst.purchase}
end

local function expired(pool_key, now)
  local at = rcall('HGET', pool_key, 'expires_at')
  return at and at ~= '' and tonumber(now) >= tonumber(at)
end

-- Per-minute counters (keys.pool_stats): one string per pool and UTC day, 1440 minutes x
-- 3 kinds of u32 cells, cell = minute_of_day * 3 + kind, counted with BITFIELD INCRBY in
-- the same step that changes the codes, at the minute of the script's `now` (so a replay
-- counts where the change happened). The first count of a day makes the string full size
-- in one allocation (SETRANGE at its last byte; BITFIELD would grow it by doubling, up to
-- 2x) and sets it to expire 8 days after the day ends. 17,352 bytes a pool-day (MEMORY
-- USAGE, Redis 6.2); a day without a change costs nothing.
local STATS_ISSUED, STATS_REDEEMED, STATS_RELEASED = 0, 1, 2
local STATS_DAY_BYTES = 1440 * 3 * 4
local STATS_KEEP_DAYS = 8

-- The Unix minute of `now` and the fraction of it gone (codepool.store.stats.minute_of).
local function stats_minute(now)
  local t = tonumber(now)
  local minute = math.floor(t / 60)
  return minute, (t - minute * 60) / 60
end

local function stats_cell(minute, kind) return '#' .. ((minute % 1440) * 3 + kind) end

local function stats_prepare(day_key, minute)
  if rcall('EXISTS', day_key) == 0 then
    rcall('SETRANGE', day_key, STATS_DAY_BYTES - 1, '\0')
    rcall('EXPIREAT', day_key, (math.floor(minute / 1440) + 1 + STATS_KEEP_DAYS) * 86400)
  end
end

-- Count n changes of `kind` (STATS_*) at `now` into `day_key` (the pool's key of now's
-- day). Redeem and release (and the hold reaper) call this; issue.lua counts through
-- count_issued, which also reads the rate.
local function count_stats(day_key, now, kind, n)
  if n <= 0 then return end
  local minute = stats_minute(now)
  stats_prepare(day_key, minute)
  rcall('BITFIELD', day_key, 'INCRBY', 'u32', stats_cell(minute, kind), n)
end

-- The hand-out rate (codes per minute) from counts[1] = hand-outs in the current minute
-- so far and counts[2..6] = the five whole minutes before, `elapsed` = the fraction of
-- the current minute gone. The largest of: an exponentially weighted mean of the whole
-- minutes (halving per minute back), the count of the last 60 seconds (the previous
-- minute taken as even), and, once the current minute holds RATE_MIN_CURRENT hand-outs,
-- the current minute projected to a whole one (dividing by at least RATE_MIN_ELAPSED).
-- docs/stats.md says why; codepool.store.stats.handout_rate is the same formula, step
-- for step (the same doubles), and a test holds them equal.
local RATE_WEIGHTS = {1, 0.5, 0.25, 0.125, 0.0625}
local RATE_WEIGHT_SUM = 1.9375
local RATE_MIN_CURRENT = 10
local RATE_MIN_ELAPSED = 0.25
local function handout_rate(counts, elapsed)
  local ewma = 0
  for k = 1, 5 do ewma = ewma + RATE_WEIGHTS[k] * counts[k + 1] end
  ewma = ewma / RATE_WEIGHT_SUM
  local rate = counts[1] + counts[2] * (1 - elapsed)
  if ewma > rate then rate = ewma end
  if counts[1] >= RATE_MIN_CURRENT then
    local projected = counts[1] / math.max(elapsed, RATE_MIN_ELAPSED)
    if projected > rate then rate = projected end
  end
  return rate
end

-- Hand-outs of `minute` and the five minutes before, from the pool's day keys (today's,
-- the day before's for minutes before midnight); first adds `add` to `minute` (and
-- prepares the key when it does).
local function recent_issued(day_key, prev_key, minute, add)
  local mod = minute % 1440
  local args, counts = {}, {}
  if add > 0 then
    stats_prepare(day_key, minute)
    args = {'INCRBY', 'u32', stats_cell(minute, STATS_ISSUED), add}
  else
    args = {'GET', 'u32', stats_cell(minute, STATS_ISSUED)}
  end
  for k = 1, math.min(5, mod) do
    args[#args + 1], args[#args + 2], args[#args + 3] = 'GET', 'u32', stats_cell(minute - k, STATS_ISSUED)
  end
  counts = rcall('BITFIELD', day_key, unpack(args))
  if mod < 5 then
    args = {}
    for k = mod + 1, 5 do
      args[#args + 1], args[#args + 2], args[#args + 3] = 'GET', 'u32', stats_cell(minute - k, STATS_ISSUED)
    end
    for _, c in ipairs(rcall('BITFIELD', prev_key, unpack(args))) do counts[#counts + 1] = c end
  end
  return counts
end

-- Empty-soon alerts (pool fields `soon`: thresholds in seconds, ascending; `soon_armed`:
-- those armed). A threshold T is armed while the pool would not run dry within T seconds
-- at the current rate (or the rate is 0). After a hand-out (issue.lua, `emit` given),
-- each armed T with time-to-empty <= T fires one POOL_EMPTY_SOON and is disarmed; at
-- every check (hand-out, refill, release, PATCH) each disarmed T with time-to-empty > T
-- is armed again. Reads the counters only when the pool has thresholds. Returns the
-- alerts fired, as the journal keeps them: 'soon:<T>:<rate_per_minute>:<empty_at>'.
local function check_soon(pool, soon, armed, counts, now, available, emit)
  local fired = {}
  if soon == '' then return fired end
  local minute, elapsed = stats_minute(now)
  local rate = handout_rate(counts, elapsed)
  local ttl = nil  -- seconds to empty; nil: never at a rate of 0
  if rate > 0 then ttl = available * 60 / rate end
  local is_armed = {}
  for t in string.gmatch(armed, '[^,]+') do is_armed[t] = true end
  local now_armed = {}
  for t in string.gmatch(soon, '[^,]+') do
    local within = ttl ~= nil and ttl <= tonumber(t)
    if is_armed[t] and within and emit then
      local r, at = string.format('%.3f', rate), string.format('%.3f', tonumber(now) + ttl)
      emit({'type', 'POOL_EMPTY_SOON', 'time', now, 'pool_id', pool.id, 'available', available,
            'rate_per_minute', r, 'empty_at', at, 'threshold_seconds', t}, pool)
      fired[#fired + 1] = 'soon:' .. t .. ':' .. r .. ':' .. at
    elseif not within or is_armed[t] then
      now_armed[#now_armed + 1] = t
    end
  end
  local joined = table.concat(now_armed, ',')
  if joined ~= armed then rcall('HSET', pool.key, 'soon_armed', joined) end
  return fired
end

-- The re-arm part of check_soon for steps that add codes (a refill, a release) or change
-- the thresholds: reads the pool's thresholds and its counters itself.
local function rearm_soon(pool_key, day_key, prev_key, now, available)
  local f = rcall('HMGET', pool_key, 'soon', 'soon_armed')
  if not f[1] or f[1] == '' then return end
  local counts = recent_issued(day_key, prev_key, stats_minute(now), 0)
  check_soon({key = pool_key}, f[1], f[2] or '', counts, now, available, nil)
end

-- An assigned instance goes back to the end of its pool's available list: the one step
-- release.lua (an admin's release) and reap_holds.lua (an expired hold) share. The
-- caller has already taken `inst` out of the code's issued record, and re-arms the
-- pool's thresholds (rearm) once it is done with the pool. `t` holds the key templates
-- (pool, avail, log, user, reward_users, user_events, stats: the per-minute counters of
-- now's day), user_maxlen (the user events index's cap) and ix (the code index lookup
-- context of this code, see cx_for in codeindex.lua, which scripts that give codes back
-- include); `extra` more event fields
-- (the reason). The caller re-arms empty-soon alerts too (rearm_soon).
-- Returns the pool's available count after it and the position the code now holds in
-- the available list (see issue.lua: positions tell a restore what a snapshot holds).
local function give_back(emit, t, code, inst, now, extra)
  local pool_key = fill(t.pool, inst.pool)
  local available = rcall('RPUSH', fill(t.avail, inst.pool), code)
  -- Its index entry points at where it is now (cx_point), in this same step.
  local position = tonumber(rcall('HGET', pool_key, 'popped') or '0') + available - 1
  t.ix.point(t.ix, code, pool_key, inst.pool, position)
  -- Keep log and user list equal to what is handed out (see records.walk in Python).
  rcall('LREM', fill(t.log, inst.pool), -1, code)
  if inst.user ~= '' then
    rcall('LREM', fill(t.user, inst.user), -1, code)
    local held = fill(t.reward_users, inst.reward)
    if inst.reward ~= '' and tonumber(rcall('HGET', held, inst.user) or '0') > 0 then
      rcall('HINCRBY', held, inst.user, -1)
    end
  end
  rcall('HINCRBY', pool_key, 'assigned', -1)
  count_stats(fill(t.stats, inst.pool), now, STATS_RELEASED, 1)
  local fields = {'type', 'VOUCHER_RELEASED', 'time', now, 'code', code, 'pool_id', inst.pool,
                  'user_id', inst.user, 'reward_id', inst.reward, 'purchase_id', inst.purchase}
  for _, v in ipairs(extra or {}) do fields[#fields + 1] = v end
  local event_id = emit(fields)
  if inst.user ~= '' then add_user_event(fill(t.user_events, inst.user), t.user_maxlen, event_id, fields) end
  return available, position
end
