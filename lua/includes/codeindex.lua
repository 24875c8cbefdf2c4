--[[
  The code index's Lua side (docs/index.md, codepool.store.codeindex): reading,
  pointing a released code's entry, the CRC-32. scripts.py pastes this file where a
  script says --@include "codeindex.lua", after common.lua (it uses fill and split).
  Kept out of common.lua so that scripts that never touch the index (issue.lua, the
  hand-out hot path) do not build its closures on every call.
]]
-- The code index (docs/index.md, codepool.store.codeindex): per project 2^15 bucket
-- strings (keys.code_index) of fixed-width entries, one per code instance put into a
-- pool, ENTRY_W bytes each: fingerprint (3 B: bits 8..31 of the code's CRC-32; the
-- bucket is its low 15 bits), upload number (3 B), offset in that upload (4 B), all
-- big-endian. The uploads hash (keys.code_index_uploads) maps an upload number to
-- nseg (4 B) | moved (4 B) | nseg segments (offset 4 B, position 4 B) | pool id:
-- commit_upload.lua appends a segment per slice it moves (offsets from `offset` on now
-- sit at `position` on); offsets at or past `moved` are not in the pool yet. A pool's
-- identity upload (pool hash field `ix`: one segment (0, 0), moved 2^32 - 1) names
-- positions directly: releases and rebuilt indexes use it. A position p of a pool is
-- its available list's index p - popped (issue.lua counts `popped`), or already
-- handed out (p < popped: the issued hash answers for it). An entry is verified with
-- LINDEX before it answers, so fingerprint collisions cost a read, never a wrong answer.
local ENTRY_W = 10
local IDENTITY_MOVED = 4294967295

local function be(n, width)
  if width == 3 then
    return string.char(math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
  end
  local out = {}
  for i = width, 1, -1 do out[i] = n % 256; n = math.floor(n / 256) end
  return string.char(unpack(out))
end

local function unbe(s, at, width)
  local v = 0
  for i = at, at + width - 1 do v = v * 256 + string.byte(s, i) end
  return v
end

-- CRC-32 (zlib's), for scripts that learn a code from Redis (the hold reaper). The
-- table is built on first use, so scripts that never hash pay nothing. `bit` is Redis's
-- bitop library; the arithmetic xor serves Lua engines without it (fakeredis).
local CRC_T = nil
local function xor32(a, b)
  if bit then return bit.bxor(a, b) % 4294967296 end
  local r, p = 0, 1
  while a > 0 or b > 0 do
    local x, y = a % 2, b % 2
    if x ~= y then r = r + p end
    a, b, p = (a - x) / 2, (b - y) / 2, p * 2
  end
  return r
end
local function crc32(s)
  if not CRC_T then
    CRC_T = {}
    for i = 0, 255 do
      local c = i
      for _ = 1, 8 do
        if c % 2 == 1 then c = xor32(math.floor(c / 2), 3988292384) else c = math.floor(c / 2) end
      end
      CRC_T[i] = c
    end
  end
  local c = 4294967295
  for i = 1, #s do
    c = xor32(CRC_T[xor32(c % 256, string.byte(s, i))], math.floor(c / 256))
  end
  return xor32(c, 4294967295)
end

local function cx_upload(ix, u)
  local m = ix.uploads[u]
  if m == nil then
    local v = rcall('HGET', ix.map, u)
    m = false
    if v then
      local n = unbe(v, 1, 4)
      m = {n = n, moved = unbe(v, 5, 4), v = v, pool = string.sub(v, 9 + 8 * n)}
    end
    ix.uploads[u] = m
  end
  return m
end

-- {popped = n} of a live pool, false for a deleted one.
local function cx_pool(ix, pool_id)
  local p = ix.pools[pool_id]
  if p == nil then
    local f = rcall('HMGET', fill(ix.pool_t, pool_id), 'name', 'popped')
    p = f[1] and {popped = tonumber(f[2] or '0')} or false
    ix.pools[pool_id] = p
  end
  return p
end

-- The position an offset of an upload landed at, or nil while it is not in the pool.
local function cx_position(m, o)
  if o >= m.moved or m.n == 0 then return nil end
  local lo, hi = 1, m.n  -- the last segment starting at or before o
  while lo < hi do
    local mid = math.floor((lo + hi + 1) / 2)
    if unbe(m.v, 1 + 8 * mid, 4) <= o then lo = mid else hi = mid - 1 end
  end
  local start = unbe(m.v, 1 + 8 * lo, 4)
  if start > o then return nil end
  return unbe(m.v, 5 + 8 * lo, 4) + o - start
end

-- Calls fn(at, u, o) for each entry of the bucket string s with the context's
-- fingerprint (at: the entry's first byte) until fn returns a true value, which is
-- returned. string.find runs at C speed; a hit off an entry boundary is skipped.
local function cx_each(s, fp, fn)
  local from = 1
  while true do
    local at = string.find(s, fp, from, true)
    if not at then return nil end
    if (at - 1) % ENTRY_W == 0 then
      local r = fn(at, unbe(s, at + 3, 3), unbe(s, at + 6, 4))
      if r then return r end
      from = at + ENTRY_W
    else
      from = at + 1
    end
  end
end

-- What an entry points at: 'avail', pool id, index (an available code, not yet
-- compared), or 'dead' (handed out since, pool or upload gone), or 'flight' (an
-- upload not committed yet).
local function cx_target(ix, u, o)
  local m = cx_upload(ix, u)
  if not m then return 'dead' end
  if o >= m.moved then return 'flight' end
  local pos = cx_position(m, o)
  if not pos then return 'dead' end
  local p = cx_pool(ix, m.pool)
  if not p or pos < p.popped then return 'dead' end
  return 'avail', m.pool, pos - p.popped
end

-- LINDEX from whichever end is nearer (Redis walks the list from the end the sign of
-- the index names: a 10M-code list is walked at most halfway).
local function lindex_near(list, index)
  local len = rcall('LLEN', list)
  if index >= len then return nil end
  if index > len / 2 then return rcall('LINDEX', list, index - len) end
  return rcall('LINDEX', list, index)
end

-- The pool holding `code` available (the first found), or nil.
local function cx_available(ix, code, only_pool)
  local s = rcall('GET', ix.bucket)
  if not s then return nil end
  return cx_each(s, ix.fp, function(_, u, o)
    local kind, pool_id, index = cx_target(ix, u, o)
    if kind == 'avail' and (not only_pool or pool_id == only_pool)
        and lindex_near(fill(ix.avail_t, pool_id), index) == code then
      return pool_id
    end
  end)
end

-- Where a code with no live issued record is: {-11, pool id} if a pool holds it
-- available (never handed out, or released back), {-10} if none does. O(1): one
-- bucket of the index, an LINDEX per fingerprint match.
local function not_issued_or_unknown(ix, code)
  local pool_id = cx_available(ix, code)
  if pool_id then return {-11, pool_id} end
  return {-10}
end

-- The pool's identity upload number (allocated on first use).
local function cx_identity(ix, pool_key, pool_id)
  local u = rcall('HGET', pool_key, 'ix')
  if u then return tonumber(u) end
  u = rcall('HINCRBY', ix.map, 'seq', 1)
  rcall('HSET', ix.map, u, be(1, 4) .. be(IDENTITY_MOVED, 4) .. be(0, 8) .. pool_id)
  rcall('HSET', pool_key, 'ix', u)
  return u
end

-- Set a bucket string: SET allocates it to size (APPEND would double its capacity).
local function cx_put(key, s)
  if s == '' then rcall('DEL', key) else rcall('SET', key, s) end
end

-- A code just went back to `position` of a pool: point an entry of its fingerprint
-- that points nowhere live (its instance was handed out, or its pool deleted) at it
-- (SETRANGE in place), or append one. Dead entries of one fingerprint are
-- interchangeable, so the one reused need not be this code's own.
local function cx_point(ix, code, pool_key, pool_id, position)
  local u = cx_identity(ix, pool_key, pool_id)
  ix.pools[pool_id] = nil  -- `popped` may have changed since it was read
  local tail = be(u, 3) .. be(position, 4)
  local s = rcall('GET', ix.bucket) or ''
  local at = cx_each(s, ix.fp, function(at, eu, o)
    if cx_target(ix, eu, o) == 'dead' then return at end
  end)
  if at then
    rcall('SETRANGE', ix.bucket, at - 1 + 3, tail)
  else
    cx_put(ix.bucket, s .. ix.fp .. tail)
  end
end

-- A lookup context: ix = {map = uploads hash, bucket = the code's bucket key, fp = its
-- 3-byte fingerprint, pool_t = pool hash template, avail_t = available list template},
-- with caches of uploads and pools filled as entries are read. cx_for(ix, crc, bucket_t)
-- fills bucket and fp from a CRC-32 (bucket_t: keys.code_index with "\0" for the bucket).
local function cx_for(ix, crc, bucket_t)
  ix.fp = be(math.floor(crc / 256), 3)
  if bucket_t then ix.bucket = fill(bucket_t, tostring(crc % 32768)) end
  ix.uploads, ix.pools = ix.uploads or {}, ix.pools or {}
  ix.point = cx_point  -- for give_back (common.lua), which cannot name it
  return ix
end
