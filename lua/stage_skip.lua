--[[
  For a duplicates=skip upload: stage the codes of one chunk that are neither in the
  pool (seen-set, seeded from the available list; issued hash for handed-out ones)
  nor earlier in this upload. With pool id '' (code generation) a code handed out
  from any pool of the project counts as present (the seen-set is then seeded from
  every pool's available list).

  Codes are looked up a block at a time (SMISMEMBER, HMGET, one SADD and RPUSH per
  block; needs Redis >= 6.2): one command per code was 3x slower.

  KEYS[1] staging list   KEYS[2] seen set   KEYS[3] issued hash
  ARGV[1] pool id ('' = any pool)   ARGV[2] ttl (s)   ARGV[3..] codes
  Returns: {staged, skipped}
]]
local rcall = redis.call
--@include "common.lua"
local pool_id = ARGV[1]
local BLOCK = 4000
local staged, skipped = 0, 0

local function issued_here(record)
  if not record then return false end
  if pool_id == '' then return true end
  for _, inst in ipairs(split(record, RS)) do
    if split(inst, US)[1] == pool_id then return true end
  end
  return false
end

for first = 3, #ARGV, BLOCK do
  local last = math.min(first + BLOCK - 1, #ARGV)
  local present = rcall('SMISMEMBER', KEYS[2], unpack(ARGV, first, last))
  local records = rcall('HMGET', KEYS[3], unpack(ARGV, first, last))
  local batch, here = {}, {}
  for k = 1, last - first + 1 do
    local code = ARGV[first + k - 1]
    if present[k] == 0 and not here[code] and not issued_here(records[k]) then
      batch[#batch + 1] = code
    else
      skipped = skipped + 1
    end
    here[code] = true
  end
  rcall('SADD', KEYS[2], unpack(ARGV, first, last))
  if #batch > 0 then rcall('RPUSH', KEYS[1], unpack(batch)); staged = staged + #batch end
end
rcall('EXPIRE', KEYS[1], ARGV[2])
rcall('EXPIRE', KEYS[2], ARGV[2])
return {staged, skipped}
