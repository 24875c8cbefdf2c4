--[[
  For a duplicates=skip upload: stage the codes of one chunk that are neither in the
  pool (available: the code index; handed out: the issued hash) nor earlier in this
  upload (its own index entries point into its staging list), and index the staged
  ones in the same step. With pool id '' (code generation) a code of any pool of the
  project counts as present.

  KEYS[1] staging list   KEYS[2] issued hash   KEYS[3] index uploads hash
  ARGV[1] pool id ('' = any pool)   ARGV[2] staging TTL (s)   ARGV[3] this upload's index number
  ARGV[4] bucket key template (keys.code_index)   ARGV[5] pool hash template
  ARGV[6] available list template   ARGV[7..] code, CRC-32 of the code, ...
  Returns: {staged, skipped}
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local staging, issued, pool_id, own = KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[3])
local base = rcall('LLEN', staging)
local staged, skipped, batch, here = 0, 0, {}, {}
local pieces, order = {}, {}   -- bucket key -> new entries; buckets in first-touch order
local uploads = {}

-- The issued records of the chunk's codes, in one HMGET.
local codes = {}
for i = 7, #ARGV, 2 do codes[#codes + 1] = ARGV[i] end
local records = #codes > 0 and rcall('HMGET', issued, unpack(codes)) or {}

local function issued_here(record)
  if not record then return false end
  if pool_id == '' then return true end
  for _, inst in ipairs(split(record, RS)) do
    if split(inst, US)[1] == pool_id then return true end
  end
  return false
end

-- Each bucket is read once per call: only this script writes it meanwhile, and what
-- it adds (this chunk's codes) is in `here`.
local buckets = {}
local function bucket(key)
  local s = buckets[key]
  if s == nil then s = rcall('GET', key) or ''; buckets[key] = s end
  return s
end

local function in_pool(ix, code)
  return cx_each(bucket(ix.bucket), ix.fp, function(_, u, o)
    if u == own then
      return o < base and lindex_near(staging, o) == code
    end
    local kind, p, index = cx_target(ix, u, o)
    return kind == 'avail' and (pool_id == '' or p == pool_id) and lindex_near(fill(ix.avail_t, p), index) == code
  end)
end

local ix = {map = KEYS[3], pool_t = ARGV[5], avail_t = ARGV[6], uploads = uploads, pools = {}}
for i = 7, #ARGV, 2 do
  local code = ARGV[i]
  cx_for(ix, tonumber(ARGV[i + 1]), ARGV[4])
  if here[code] or issued_here(records[(i - 5) / 2]) or in_pool(ix, code) then
    skipped = skipped + 1
  else
    here[code] = true
    batch[#batch + 1] = code
    if not pieces[ix.bucket] then pieces[ix.bucket] = {}; order[#order + 1] = ix.bucket end
    local p = pieces[ix.bucket]
    p[#p + 1] = ix.fp .. be(own, 3) .. be(base + staged + #batch - 1, 4)
  end
  if #batch == 4000 then rcall('RPUSH', staging, unpack(batch)); staged = staged + #batch; batch = {} end
end
if #batch > 0 then rcall('RPUSH', staging, unpack(batch)); staged = staged + #batch end
for _, key in ipairs(order) do
  cx_put(key, bucket(key) .. table.concat(pieces[key]))
end
rcall('EXPIRE', staging, ARGV[2])
return {staged, skipped}
