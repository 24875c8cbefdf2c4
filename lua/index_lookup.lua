--[[
  For a duplicates=skip upload and code generation: which of the given codes are
  present already. Read-only; codepool.store.codeindex.present groups a large chunk's
  codes by bucket so that each bucket string is read once for all its codes (one GET
  per bucket, string.find per code), and the issued records come in one HMGET.
  Present: handed out from the pool (issued hash), available in the pool (the index,
  each fingerprint hit compared with LINDEX), or staged earlier by this very upload
  (its own entries point into its staging list). With pool id '' (generation) a code
  of any pool of the project counts. Entries of other uploads not committed yet
  ('flight') answer nothing, as for validate.

  KEYS[1] this upload's staging list   KEYS[2] issued hash   KEYS[3] index uploads hash
  ARGV[1] pool id ('' = any pool)   ARGV[2] this upload's index number
  ARGV[3] bucket key prefix (keys.code_index up to the bucket number)
  ARGV[4] pool hash template   ARGV[5] available list template
  ARGV[6] per code: bucket number (2 B), fingerprint (3 B), big-endian
  ARGV[7..] the codes, sorted by bucket (a bucket's codes may go on into the next call)
  Returns: the present codes
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local staging, issued, pool_id, own, prefix = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local base = rcall('LLEN', staging)
local byte, sub = string.byte, string.sub

-- The issued records of every code of the call, in one HMGET.
local meta = ARGV[6]
local records = #ARGV > 6 and rcall('HMGET', issued, unpack(ARGV, 7)) or {}

local function issued_here(record)
  if not record then return false end
  if pool_id == '' then return true end
  for _, inst in ipairs(split(record, RS)) do
    if split(inst, US)[1] == pool_id then return true end
  end
  return false
end

local ix = {map = KEYS[3], pool_t = ARGV[4], avail_t = ARGV[5], uploads = {}, pools = {}}
local code  -- the code being looked up (read by `same`)
local function same(_, u, o)
  if u == own then
    return o < base and lindex_near(staging, o) == code
  end
  local kind, p, index = cx_target(ix, u, o)
  return kind == 'avail' and (pool_id == '' or p == pool_id)
    and lindex_near(fill(ix.avail_t, p), index) == code
end

local present, s, s_of = {}, '', nil
for n = 1, #ARGV - 6 do
  local at = 5 * n - 4
  local b1, b2 = byte(meta, at, at + 1)
  local b = b1 * 256 + b2
  if b ~= s_of then
    s_of = b
    s = rcall('GET', prefix .. b) or ''
  end
  code = ARGV[n + 6]
  if issued_here(records[n]) or (s ~= '' and cx_each(s, sub(meta, at + 2, at + 4), same)) then
    present[#present + 1] = code
  end
end
return present
