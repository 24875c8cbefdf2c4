--[[
  Append fixed-width codes to a staging list: a generation's codes (all of one width)
  passed as one string, cut here. A pipelined RPUSH costs the client ~0.5 us a code
  (its argument tuple and command stack, even packed by hiredis), more than drawing and
  checking it; this costs Redis ~0.3 us a code and the client nearly nothing. The list is private to its upload until the
  commit (as the pipelined RPUSH of an upload: no visible state changes).

  KEYS[1] the staging list
  ARGV[1] the codes, concatenated   ARGV[2] the width of each   ARGV[3] TTL (seconds)
  Returns: the list's length
]]
local rcall = redis.call
local blob, width = ARGV[1], tonumber(ARGV[2])
local sub, batch, n = string.sub, {}, 0
for at = 1, #blob, width do
  n = n + 1
  batch[n] = sub(blob, at, at + width - 1)
  if n == 2000 then  -- unpack's stack limit is ~8000 values
    rcall('RPUSH', KEYS[1], unpack(batch))
    batch, n = {}, 0
  end
end
if n > 0 then rcall('RPUSH', KEYS[1], unpack(batch, 1, n)) end
rcall('EXPIRE', KEYS[1], ARGV[3])
return rcall('LLEN', KEYS[1])
