--[[
  Read one slice of a list of code strings (a pool's hand-out log, a user's codes)
  together with the issued records of those codes, in one consistent step.

  KEYS[1] list of codes   KEYS[2] issued hash
  ARGV[1] start index   ARGV[2] slice size
  Returns: {code_1, record_1, code_2, record_2, ...} (record "" if none)
]]
local rcall = redis.call
local codes = rcall('LRANGE', KEYS[1], ARGV[1], tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1)
local out = {}
for i, code in ipairs(codes) do
  out[2 * i - 1] = code
  out[2 * i] = rcall('HGET', KEYS[2], code) or ''
end
return out
