--[[
  For a duplicates=skip upload: copy one slice of the pool's available codes into
  the upload's seen-set, so codes already in the pool are skipped.

  KEYS[1] available list   KEYS[2] seen set
  ARGV[1] start index   ARGV[2] slice size   ARGV[3] ttl (s) of the seen set
  Returns: codes read (fewer than the slice size = the end was reached)
]]
local rcall = redis.call
local codes = rcall('LRANGE', KEYS[1], ARGV[1], tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1)
if #codes > 0 then
  for i = 1, #codes, 4000 do
    rcall('SADD', KEYS[2], unpack(codes, i, math.min(i + 3999, #codes)))
  end
  rcall('EXPIRE', KEYS[2], ARGV[3])
end
return #codes
