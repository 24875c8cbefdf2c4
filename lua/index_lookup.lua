--[[
  For a duplicates=skip upload and code generation: which of the given codes are in
  the code index already. Read-only; codepool.store.codeindex sorts a large chunk's
  codes by bucket so that each bucket string is read once for all its codes (one GET
  per bucket per call, a string.find per code). The codes come as one string, and a
  code becomes a Lua string only when its fingerprint is found in its bucket (passing
  2,000 codes as separate ARGV costs more than the lookup itself). Present: available
  in the pool (an index hit, compared with LINDEX), or staged earlier by this very
  upload (its own entries point into its staging list). With pool id '' (generation) a
  code of any pool of the project counts. Entries of other uploads not committed yet
  ('flight') answer nothing, as for validate. Handed-out codes are not this script's:
  the caller reads their issued records (HMGET) alongside.

  KEYS[1] this upload's staging list   KEYS[2] index uploads hash
  ARGV[1] pool id ('' = any pool)   ARGV[2] this upload's index number
  ARGV[3] bucket key prefix (keys.code_index up to the bucket number)
  ARGV[4] pool hash template   ARGV[5] available list template
  ARGV[6] the codes, sorted by bucket, each as bucket (2 B), fingerprint (3 B), code
          length (2 B), all big-endian, then the code
  Returns: the present codes
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local staging, pool_id, own, prefix = KEYS[1], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local base = rcall('LLEN', staging)
local byte, sub, find = string.byte, string.sub, string.find

local ix = {map = KEYS[2], pool_t = ARGV[4], avail_t = ARGV[5], uploads = {}, pools = {}}
local code  -- the code being looked up (read by `same`)
local function same(_, u, o)
  if u == own then
    return o < base and lindex_near(staging, o) == code
  end
  local kind, p, index = cx_target(ix, u, o)
  return kind == 'avail' and (pool_id == '' or p == pool_id)
    and lindex_near(fill(ix.avail_t, p), index) == code
end

local blob, at, present, s, s_of = ARGV[6], 1, {}, '', nil
while at <= #blob do
  local b1, b2, _, _, _, l1, l2 = byte(blob, at, at + 6)
  local b, len = b1 * 256 + b2, l1 * 256 + l2
  if b ~= s_of then
    s_of = b
    s = rcall('GET', prefix .. b) or ''
  end
  if s ~= '' then
    local fp = sub(blob, at + 2, at + 4)
    if find(s, fp, 1, true) then
      code = sub(blob, at + 7, at + 6 + len)
      if cx_each(s, fp, same) then present[#present + 1] = code end
    end
  end
  at = at + 7 + len
end
return present
