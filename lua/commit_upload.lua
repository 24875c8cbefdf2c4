--[[
  Make a validated upload available: move (a slice of) the staging list onto the end
  of the pool's available list, count it into `total` and re-arm low-stock alerts.
  Called repeatedly until it returns 0 remaining, so a 20-million-code refill never
  blocks Redis for long; counters are exact after every call. When the pool has
  nothing available, the staging list simply becomes the available list (O(1)).

  The first call (the pool has no commit mark yet) counts the whole upload into the
  project's stored count, or refuses it all when that would pass the quota: checked and
  counted in one step, so two concurrent uploads cannot both slip under it.

  With an Idempotency-Key the first call also claims its record (or finds it: then the
  staging list is dropped and the first answer given again), and the last call writes
  the answer into it: the record and the codes land in the same atomic steps.

  KEYS[1] pool hash   KEYS[2] available list   KEYS[3] staging list
  KEYS[4] project stored count   KEYS[5] upload idempotency record (keys.upload_idempotency)
  KEYS[6] the pool's per-minute counters of now's UTC day   KEYS[7] of the day before
  KEYS[8] code index uploads hash (keys.code_index_uploads)
  ARGV[1] slice size   ARGV[2] upload id   ARGV[3] quota (0 = none)
  ARGV[4] body fingerprint ('' = no Idempotency-Key)   ARGV[5] added   ARGV[6] skipped
  ARGV[7] record TTL (s)   ARGV[8] now (re-arms empty-soon alerts)
  ARGV[9] the upload's code index number ('' none): each slice moved is recorded there
  as a segment (its first offset, the position it lands at), see includes/common.lua
  Returns: {remaining, total, available}, or {-5} when the pool is gone (staging dropped),
  or {-13, quota, stored, requested} when over the quota (staging dropped, nothing stored),
  or (staging dropped, nothing stored) {2, added, skipped, total, available}: the key's
  first answer, {-4}: the key was used with another body, {-14}: its upload is still
  being committed
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local pool, avail, staging, stored, record = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local mark = 'committing:' .. ARGV[2]
local fingerprint = ARGV[4] or ''
if rcall('EXISTS', pool) == 0 then
  -- delete_pool.lua took off what was moved; what was counted but not moved goes here.
  -- A staging list without a TTL was PERSISTed (and counted) by an earlier call.
  if rcall('PTTL', staging) == -1 then rcall('DECRBY', stored, rcall('LLEN', staging)) end
  rcall('UNLINK', staging)
  return {-5}
end
if rcall('HEXISTS', pool, mark) == 0 then
  if fingerprint ~= '' then
    local first = rcall('GET', record)
    if first then
      rcall('UNLINK', staging)
      local parts = split(first, '|')
      if parts[1] ~= fingerprint then return {-4} end
      if parts[2] == 'pending' then return {-14} end
      return {2, tonumber(parts[2]), tonumber(parts[3]), tonumber(parts[4]), tonumber(parts[5])}
    end
  end
  local requested = rcall('LLEN', staging)
  local have = tonumber(rcall('GET', stored) or '0')
  local quota = tonumber(ARGV[3])
  if quota > 0 and have + requested > quota then
    rcall('UNLINK', staging)
    return {-13, quota, have, requested}
  end
  rcall('INCRBY', stored, requested)
  if fingerprint ~= '' then
    rcall('SET', record, fingerprint .. '|pending', 'EX', tonumber(ARGV[7]))
  end
end
-- The mark lets a restarted service finish a commit a crash interrupted.
rcall('HSET', pool, mark, staging)
rcall('PERSIST', staging)

local moved = 0
local avail_before = rcall('LLEN', avail)
if avail_before == 0 then
  moved = rcall('LLEN', staging)
  if moved > 0 then rcall('RENAME', staging, avail) end
else
  local codes = rcall('LRANGE', staging, 0, tonumber(ARGV[1]) - 1)
  moved = #codes
  for i = 1, moved, 4000 do
    rcall('RPUSH', avail, unpack(codes, i, math.min(i + 3999, moved)))
  end
  if moved > 0 then rcall('LTRIM', staging, moved, -1) end
end

if moved > 0 and (ARGV[9] or '') ~= '' then
  -- Where this slice's offsets landed: the code at offset `done` is at position
  -- popped + avail_before (positions count every code ever popped, see issue.lua).
  local map = rcall('HGET', KEYS[8], ARGV[9])
  if map then
    local n, done = unbe(map, 1, 4), unbe(map, 5, 4)
    local position = tonumber(rcall('HGET', pool, 'popped') or '0') + avail_before
    rcall('HSET', KEYS[8], ARGV[9], be(n + 1, 4) .. be(done + moved, 4) .. string.sub(map, 9, 8 + 8 * n)
          .. be(done, 4) .. be(position, 4) .. string.sub(map, 9 + 8 * n))
  end
end
local total = rcall('HINCRBY', pool, 'total', moved)
local available = rcall('LLEN', avail)
if moved > 0 then
  rearm(pool, available)
  rearm_soon(pool, KEYS[6], KEYS[7], ARGV[8], available)
end
local remaining = rcall('LLEN', staging)
if remaining == 0 then
  rcall('HDEL', pool, mark)
  if fingerprint ~= '' then
    rcall('SET', record, table.concat({fingerprint, ARGV[5], ARGV[6], total, available}, '|'),
      'EX', tonumber(ARGV[7]))
  end
end
return {remaining, total, available}
