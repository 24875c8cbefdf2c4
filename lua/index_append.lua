--[[
  Write entries into code index buckets (codepool.store.codeindex computes and groups
  them per bucket). 'append': one APPEND per bucket, for the flushes during an upload.
  'final': GET, add the entries, SET: the last write of an upload passes every bucket
  it touched this way (with or without new entries), because APPEND leaves a string
  room to double and SET allocates just what the bytes need.

  KEYS[1] index uploads hash (names the project's slot)
  ARGV[1] bucket key prefix (keys.code_index up to the bucket number)
  ARGV[2] 'append' or 'final'   ARGV[3..] bucket number, entries, bucket number, ...
  Returns: the number of buckets written
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local prefix, final = ARGV[1], ARGV[2] == 'final'
for i = 3, #ARGV, 2 do
  local key = prefix .. ARGV[i]
  if final then
    cx_put(key, (rcall('GET', key) or '') .. ARGV[i + 1])
  else
    rcall('APPEND', key, ARGV[i + 1])
  end
end
return (#ARGV - 2) / 2
