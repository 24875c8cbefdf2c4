--[[
  Hand out codes from one pool to a batch of requests, atomically.

  One call serves every request the issuer coalesced for this pool. Each request is
  all-or-nothing: it gets all the codes it asked for or none. Checks (expiry, reward,
  per-user limit, idempotency) and the pop happen in this one step, so no two
  requests can both pass a check that only one of them should.

  KEYS[1] pool hash            KEYS[2] available list      KEYS[3] issued hash
  KEYS[4] pool log list        KEYS[5] events stream       KEYS[6] outbox stream
  KEYS[7] project webhook hash
  per request i (0-based), from KEYS[8 + 3*i]:
    idempotency key, user codes list, user events list (keys.user_events: the
    purchase's REDEEMED_VOUCHER goes there too)
    (a request without idempotency/user passes placeholder names, never touched)
  after the per-request keys: KEYS[8 + 3*n] the pool's per-minute counters of now's UTC
    day, KEYS[9 + 3*n] those of the day before (keys.pool_stats; the hand-outs are
    counted there, and the rate the empty-soon alerts need is read from there),
    KEYS[10 + 3*n] the project's rate-limit windows (keys.rate_window, a prefix:
    common.lua's count_requests)
  per group j (1-based; see ARGV), from KEYS[11 + 3*n + 3*(j-1)]:
    reward hash, reward users hash, credential key (the project's API keys hash or the
    project hash) (placeholders when the group has no reward / no credential)

  ARGV[1] now (unix seconds)   ARGV[2] pool id   ARGV[3] events maxlen
  ARGV[4] idempotency ttl (s)  ARGV[5] number of requests n   ARGV[6] user events maxlen
  ARGV[7] number of groups m
  per request i, from ARGV[8 + 6*i]:
    count, user id ("" none), group j (1-based, as text), fingerprint ("" no
    idempotency key), purchase id, rate-limit credential (the caller's field in the
    windows: "user:<id>", "key:<key id>"; "" when not limited)
  per group j, from ARGV[8 + 6*n + 4*(j-1)]:
    reward id ("" none: an admin pool issue), credential kind ("" none, "key", "user")
    and value, rate limit (requests per second of the caller's role; 0 none)
  A group is what requests share (the reward they buy, who asks and their limit): a
  flash sale's batch is one group, so the reward and credential keys, the checks on
  them and their arguments come once per call, not once per request (each KEYS/ARGV
  item costs Redis ~1k instructions to set up; loadtest/script_cost.py).
  Credential: the caller was authenticated from a per-process cache (codepool.auth),
  so this step re-checks what the cache took on trust: for "key" the API key id must
  still be in the keys hash (not revoked), for "user" the secret the JWT was verified
  with must still be the project's user_token_secret (not rotated)

  Issued record (value of the issued hash, field = code string): one entry per
  instance of that string that left `available`, entries separated by \30, fields
  by \31:  pool_id, status (a assigned | r redeemed), assigned_time, redeemed_time,
  user_id, reward_id, purchase_id [, hold_expires_at: only while held]

  Holds (only when a request of the batch asks for one; a batch without holds passes
  neither, so it pays nothing for them): after the per-request entries and the counters,
    KEYS[11 + 3*n + 3*m] the project's holds zset (keys.holds)
    ARGV[8 + 6*n + 4*m + i] request i's hold_expires_at (unix seconds as text, "" no hold)
  A held hand-out's record entries carry hold_expires_at as an eighth field, its codes
  go into the holds zset (ZADD LT: scored by their earliest hold) for reap_holds.lua,
  and its REDEEMED_VOUCHER events carry hold_expires_at.

  Idempotency record: fingerprint \31 assigned_time \31 purchase_id \31 available
  \31 codes joined by ","

  Returns: {available after the batch, then per request:
            status, available, assigned_time, purchase_id, hide_code (0|1), n,
            code_1 .. code_n,
            then the hand-out position of the batch's first code,
            then Redis's clock (TIME) in microseconds, for the journal,
            then the alerts the batch fired: low-stock thresholds, 'exhausted',
            empty-soon 'soon:<seconds>:<rate_per_minute>:<empty_at>'}
  (The alerts are journaled with the hand-outs: a restore fires again those of
  hand-outs Redis lost.)
  Positions: the pool's `popped` counts every code ever popped from its available list,
  so the k-th code this call pops (over the requests with status 1, in order) sat at
  position popped_before + k - 1. Snapshots and the journal (codepool.snapshot,
  codepool.journal) use positions to tell which hand-outs a snapshot already holds.
  status: 1 ok, 2 ok (replayed from the idempotency record),
          -1 pool exhausted, -2 pool expired, -3 per-user limit reached,
          -4 idempotency key reused with another request, -5 no such pool,
          -6 no such reward, -7 reward draws from another pool,
          -8 a retry whose codes were released since (the answer would tell codes
             that went back to the pool and may have gone to someone else),
          -9 credential revoked or rotated (nothing done; answer 401),
          -10 rate limited (nothing done; the `available` slot holds the ms left of
              the caller's window: answer 429 with Retry-After). Every request whose
              credential holds is counted in its second's window (common.lua's
              count_requests: the whole batch in one HMGET and one HSET); above the
              limit it is refused. Checked here: no round trip of its own on the
              hand-out path.
  -1 (pool exhausted) answers in `available` the codes really left for that request.
]]
local rcall = redis.call
--@include "common.lua"

local now, pool_id = ARGV[1], ARGV[2]
local maxlen, idem_ttl, n, user_maxlen = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local m = tonumber(ARGV[7])
local pool, avail_key, issued, log, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]

local emit = emitter(events, maxlen, KEYS[6], KEYS[7])
-- Holds: see the header. (The offsets follow the strides: per request 3 keys, 6 args;
-- per group 3 keys, 4 args.)
local stats_day, stats_prev, rate_windows = KEYS[8 + 3 * n], KEYS[9 + 3 * n], KEYS[10 + 3 * n]
local holds_key, hold_args = nil, 8 + 6 * n + 4 * m
if #KEYS > 10 + 3 * n + 3 * m then holds_key = KEYS[11 + 3 * n + 3 * m] end
local held_codes = {}      -- ZADD arguments: hold_expires_at, code, ...
local function event(fields, user_events)
  add_user_event(user_events, user_maxlen, emit(fields), fields)
end

local out = {0}

local function answer(status, available, at, purchase_id, hide, codes)
  out[#out + 1] = status
  out[#out + 1] = available
  out[#out + 1] = at
  out[#out + 1] = purchase_id
  out[#out + 1] = hide
  out[#out + 1] = #codes
  for i = 1, #codes do out[#out + 1] = codes[i] end
end

local function fail(status) answer(status, 0, '', '', 0, {}) end

local meta = rcall('HMGET', pool, 'name', 'expires_at', 'soon', 'soon_armed')
if not meta[1] then
  for _ = 1, n do fail(-5) end
  out[1] = 0
  return out
end
local expired = meta[2] and meta[2] ~= '' and tonumber(now) >= tonumber(meta[2])
local issued_total = 0

-- Work done once per call, not once per request (a flash sale's batch is many users
-- buying one reward): the codes every request could take are popped in one LPOP, and
-- what is left over (requests that failed or were replayed) is pushed back in order
-- before the call ends, so the list reads as if each request had popped its own. The
-- per-code issued records and the pool log are written once, after the loop (nothing
-- in the loop reads them). Credential and reward checks are read once per distinct
-- credential/reward. Measured with callgrind on redis-server (instructions per request):
-- purchase 158k -> 132k, admin issue 76k -> 62k; per bulk code 12.9k -> 11.7k.
local avail_now = rcall('LLEN', avail_key)
-- Numbers parsed once (tonumber on a string is a strtod: measurable at 15 requests a call).
local asked, counts, group_of = 0, {}, {}
for i = 0, n - 1 do
  local c = tonumber(ARGV[8 + 6 * i])
  counts[i] = c
  asked = asked + c
  group_of[i] = tonumber(ARGV[10 + 6 * i])
end

-- Groups: their credential checked once (HEXISTS/HGET), their reward read when a
-- request first needs it (the loop below).
local groups = {}
for j = 1, m do
  local kg, ag = 11 + 3 * n + 3 * (j - 1), 8 + 6 * n + 4 * (j - 1)
  local g = {reward = ARGV[ag], reward_key = KEYS[kg], reward_users = KEYS[kg + 1],
             limit = tonumber(ARGV[ag + 3]), ok = true}
  local cred_kind, cred = ARGV[ag + 1], ARGV[ag + 2]
  if cred_kind == 'key' then
    g.ok = rcall('HEXISTS', KEYS[kg + 2], cred) == 1
  elseif cred_kind == 'user' then
    g.ok = rcall('HGET', KEYS[kg + 2], 'user_token_secret') == cred
  end
  groups[j] = g
end

-- Credentials, then rate limits, for the whole batch before anything else: a request
-- whose credential was revoked is refused (-9) and not counted; the others of a limited
-- role are counted in one go (count_requests) and refused (-10) above their limit.
local refused = {}         -- request i -> false (credential), or the ms it waits
local clock = nil          -- TIME, when asked for (the journal's clock reuses it)
do
  local fields, limited, asker = {}, {}, {}
  for i = 0, n - 1 do
    local g = groups[group_of[i]]
    if not g.ok then
      refused[i] = false
    elseif g.limit > 0 then
      local k = #fields + 1
      fields[k], limited[k], asker[k] = ARGV[13 + 6 * i], g.limit, i
    end
  end
  if #fields > 0 then
    clock = rcall('TIME')
    for k, wait in pairs(count_requests(rate_windows, clock, fields, limited)) do refused[asker[k]] = wait end
  end
end
local drawn = {}
if not expired and asked > 0 and avail_now > 0 then
  drawn = rcall('LPOP', avail_key, math.min(asked, avail_now))
end
-- Whether the codes a replayed answer told were given back since: released, so the
-- record of that hand-out is gone (and the code may have gone to someone else).
local function given_back(codes, at, purchase_id)
  for _, code in ipairs(codes) do
    local kept = false
    for _, inst in ipairs(parse_record(rcall('HGET', issued, code) or '')) do
      if inst.pool == pool_id and inst.at == at and inst.purchase == purchase_id then kept = true; break end
    end
    if not kept then return true end
  end
  return false
end

local taken = 0            -- codes of `drawn` handed out so far
local handed, entries, nh = {}, {}, 0  -- codes handed out in order, their record entries
local idem_here = {}       -- idempotency records this call wrote (their codes' records come last)

for i = 0, n - 1 do
  local kb, ab = 8 + 3 * i, 8 + 6 * i
  local g = groups[group_of[i]]
  local idem_key, user_key = KEYS[kb], KEYS[kb + 1]
  local reward, reward_users = g.reward, g.reward_users
  local count, user = counts[i], ARGV[ab + 1]
  local fingerprint, purchase_id = ARGV[ab + 3], ARGV[ab + 4]

  local done, limit, hide = false, nil, 0
  local no = refused[i]
  if no == false then
    fail(-9); done = true
  elseif no then
    answer(-10, no, '', '', 0, {}); done = true
  end
  if not done and reward ~= '' then
    local r = g.fields
    if not r then
      r = rcall('HMGET', g.reward_key, 'pool_id', 'per_user_limit', 'hide_code')
      g.fields = r
    end
    if not r[1] then
      fail(-6); done = true
    elseif r[1] ~= pool_id then
      fail(-7); done = true
    else
      if r[2] and r[2] ~= '' then limit = tonumber(r[2]) end
      if r[3] == '1' then hide = 1 end
    end
  end
  if not done and fingerprint ~= '' then
    local prior = rcall('GET', idem_key)
    if prior then
      local f = split(prior, US)
      if f[1] ~= fingerprint then
        fail(-4)
      else
        local codes = {}
        if f[5] ~= '' then codes = split(f[5], ',') end
        if not idem_here[idem_key] and given_back(codes, f[2], f[3]) then
          fail(-8)
        else
          answer(2, tonumber(f[4]), f[2], f[3], hide, codes)
        end
      end
      done = true
    end
  end
  if not done and expired then fail(-2); done = true end
  if not done and limit and user ~= '' then
    local held = tonumber(rcall('HGET', reward_users, user) or '0')
    if held + count > limit then fail(-3); done = true end
  end
  if not done and avail_now < count then answer(-1, avail_now, '', '', 0, {}); done = true end

  if not done then
    local entry = pool_id .. US .. 'a' .. US .. now .. US .. US .. user .. US .. reward .. US .. purchase_id
    local hold = holds_key and ARGV[hold_args + i] or ''
    if hold ~= '' then entry = entry .. US .. hold end
    local codes = {}
    for j = 1, count do
      local code = drawn[taken + j]
      codes[j], handed[nh + j], entries[nh + j] = code, code, entry
    end
    taken, nh = taken + count, nh + count
    avail_now = avail_now - count
    if user ~= '' then rcall('RPUSH', user_key, unpack(codes)) end
    if hold ~= '' then
      for j = 1, count do held_codes[#held_codes + 1] = hold; held_codes[#held_codes + 1] = codes[j] end
    end
    if reward ~= '' then
      if user ~= '' then rcall('HINCRBY', reward_users, user, ARGV[ab]) end  -- count, as text: no snprintf
      for j = 1, count do
        local fields = {'type', 'REDEEMED_VOUCHER', 'time', now, 'user_id', user, 'reward_id', reward,
                        'pool_id', pool_id, 'code', codes[j], 'purchase_id', purchase_id}
        if hold ~= '' then fields[15], fields[16] = 'hold_expires_at', hold end
        event(fields, user ~= '' and KEYS[kb + 2])
      end
    end
    issued_total = issued_total + count
    if fingerprint ~= '' then
      rcall('SET', idem_key, fingerprint .. US .. now .. US .. purchase_id .. US .. avail_now
            .. US .. table.concat(codes, ','), 'EX', idem_ttl)
      idem_here[idem_key] = true
    end
    answer(1, avail_now, now, purchase_id, hide, codes)
  end
end

-- Arguments per command below: well under unpack's limit (LUAI_MAXCSTACK, 8000).
local SLICE = 1000

-- Left over from the one LPOP: back to the head in their order (LPUSH puts each
-- argument in front of the last, so the last code goes first).
local back = {}
for j = #drawn, taken + 1, -1 do
  back[#back + 1] = drawn[j]
  if #back == SLICE then rcall('LPUSH', avail_key, unpack(back)); back = {} end
end
if #back > 0 then rcall('LPUSH', avail_key, unpack(back)) end

-- Issued records: one HMGET and one HSET per slice of codes instead of an HSETNX per
-- code. A string can come out more than once (uploaded twice, or in two pools, even
-- twice in this very slice): its instances are joined, oldest first.
local function records(from, upto, prior)
  local flat, at, m = {}, {}, 0
  for j = from, upto do
    local code, entry = handed[j], entries[j]
    local k = at[code]
    if k then
      flat[k] = flat[k] .. RS .. entry
    else
      local before = prior[j - from + 1]
      flat[m + 1] = code
      flat[m + 2] = before and (before .. RS .. entry) or entry
      m = m + 2
      at[code] = m
    end
  end
  return flat
end

for from = 1, nh, SLICE do
  local upto = math.min(from + SLICE - 1, nh)
  local prior = rcall('HMGET', issued, unpack(handed, from, upto))
  local fresh = true
  for j = 1, upto - from + 1 do
    if prior[j] then fresh = false; break end
  end
  if fresh then
    -- The common case, without a lookup table: all new strings. HSET counts the new
    -- fields; fewer than codes means a string came twice in this slice (the later
    -- pair overwrote the earlier), so the slice is written again with them joined.
    local flat = {}
    for j = from, upto do
      local m = 2 * (j - from)
      flat[m + 1], flat[m + 2] = handed[j], entries[j]
    end
    if rcall('HSET', issued, unpack(flat)) ~= upto - from + 1 then
      rcall('HSET', issued, unpack(records(from, upto, prior)))
    end
  else
    rcall('HSET', issued, unpack(records(from, upto, prior)))
  end
  rcall('RPUSH', log, unpack(handed, from, upto))
end

-- LT: a code already held (another instance) keeps its earlier score.
for from = 1, #held_codes, 2 * SLICE do
  rcall('ZADD', holds_key, 'LT', unpack(held_codes, from, math.min(from + 2 * SLICE - 1, #held_codes)))
end

if issued_total > 0 then rcall('HINCRBY', pool, 'assigned', issued_total) end
local first_position = 0
if issued_total > 0 then first_position = rcall('HINCRBY', pool, 'popped', issued_total) - issued_total end
local available = avail_now
out[1] = available
out[#out + 1] = first_position
out[#out + 1] = redis_us(clock)

if issued_total > 0 then
  local alerting = {key = pool, name = meta[1], id = pool_id}
  for _, fired in ipairs(fire_alerts(emit, alerting, pool_id, available, now)) do
    out[#out + 1] = fired
  end
  -- Per-minute counters, and the forecast from the counts just written (common.lua).
  local soon = meta[3] or ''
  if soon == '' then
    count_stats(stats_day, now, STATS_ISSUED, issued_total)
  else
    local counts = recent_issued(stats_day, stats_prev, stats_minute(now), issued_total)
    for _, fired in ipairs(check_soon(alerting, soon, meta[4] or '', counts, now, available, emit)) do
      out[#out + 1] = fired
    end
  end
end
return out
