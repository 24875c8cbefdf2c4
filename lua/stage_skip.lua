--[[
  For a duplicates=skip upload: stage the codes of one chunk that are neither in the
  pool (seen-set, seeded from the available list; issued hash for handed-out ones)
  nor earlier in this upload. With pool id '' (code generation) a code handed out
  from any pool of the project counts as present (the seen-set is then seeded from
  every pool's available list).

  KEYS[1] staging list   KEYS[2] seen set   KEYS[3] issued hash
  ARGV[1] pool id ('' = any pool)   ARGV[2] ttl (s)   ARGV[3..] codes
  Returns: {staged, skipped}
]]
local rcall = redis.call
--@include "common.lua"
local pool_id = ARGV[1]
local staged, skipped, batch = 0, 0, {}

local function issued_here(code)
  local record = rcall('HGET', KEYS[3], code)
  if not record then return false end
  if pool_id == '' then return true end
  for _, inst in ipairs(split(record, RS)) do
    if split(inst, US)[1] == pool_id then return true end
  end
  return false
end

for i = 3, #ARGV do
  local code = ARGV[i]
  if rcall('SADD', KEYS[2], code) == 1 and not issued_here(code) then
    batch[#batch + 1] = code
  else
    skipped = skipped + 1
  end
  if #batch == 4000 then rcall('RPUSH', KEYS[1], unpack(batch)); staged = staged + #batch; batch = {} end
end
if #batch > 0 then rcall('RPUSH', KEYS[1], unpack(batch)); staged = staged + #batch end
rcall('EXPIRE', KEYS[1], ARGV[2])
rcall('EXPIRE', KEYS[2], ARGV[2])
return {staged, skipped}
