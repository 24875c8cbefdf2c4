--[[
  For a duplicates=skip upload and code generation: which of the given codes are
  present already. Read-only; codepool.store.codes groups a large chunk's codes by
  bucket so that each bucket string is read once for all its codes (GET once per
  bucket per call, string.find per code), and the issued records come in one HMGET.
  Present: handed out from the pool (issued hash), available in the pool (the index,
  each fingerprint hit compared with LINDEX), or staged earlier by this very upload
  (its own entries point into its staging list). With pool id '' (generation) a code
  of any pool of the project counts. Entries of other uploads not committed yet
  ('flight') answer nothing, as for validate.

  KEYS[1] this upload's staging list   KEYS[2] issued hash   KEYS[3] index uploads hash
  ARGV[1] pool id ('' = any pool)   ARGV[2] this upload's index number
  ARGV[3] bucket key prefix (keys.code_index up to the bucket number)
  ARGV[4] pool hash template   ARGV[5] available list template
  ARGV[6..] groups: bucket number, n, then n pairs (code, CRC-32 of the code)
  Returns: the 0-based positions (in the order the codes are given) of present codes
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local staging, issued, pool_id, own, prefix = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), ARGV[3]
local base = rcall('LLEN', staging)

-- The issued records of every code of the call, in one HMGET.
local codes = {}
local i = 6
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  for j = 0, n - 1 do codes[#codes + 1] = ARGV[i + 2 + 2 * j] end
  i = i + 2 + 2 * n
end
local records = #codes > 0 and rcall('HMGET', issued, unpack(codes)) or {}

local function issued_here(record)
  if not record then return false end
  if pool_id == '' then return true end
  for _, inst in ipairs(split(record, RS)) do
    if split(inst, US)[1] == pool_id then return true end
  end
  return false
end

local ix = {map = KEYS[3], pool_t = ARGV[4], avail_t = ARGV[5], uploads = {}, pools = {}}
local present, k = {}, 0
i = 6
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  local s = rcall('GET', prefix .. ARGV[i]) or ''
  for j = 0, n - 1 do
    local code = ARGV[i + 2 + 2 * j]
    cx_for(ix, tonumber(ARGV[i + 3 + 2 * j]))
    local hit = issued_here(records[k + 1]) or (s ~= '' and cx_each(s, ix.fp, function(_, u, o)
      if u == own then
        return o < base and lindex_near(staging, o) == code
      end
      local kind, p, index = cx_target(ix, u, o)
      return kind == 'avail' and (pool_id == '' or p == pool_id)
        and lindex_near(fill(ix.avail_t, p), index) == code
    end))
    if hit then present[#present + 1] = k end
    k = k + 1
  end
  i = i + 2 + 2 * n
end
return present
