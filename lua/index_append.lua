--[[
  Append entries to code index buckets: one APPEND per bucket (codepool.store.codeindex
  computes and groups them; index_compact.lua trims the buckets when the upload ends).

  KEYS[1] index uploads hash (names the project's slot)
  ARGV[1] bucket key template (keys.code_index, "\0" = bucket)
  ARGV[2..] bucket number, entries, bucket number, entries, ...
  Returns: the number of buckets appended to
]]
local rcall = redis.call
--@include "common.lua"
local template = ARGV[1]
for i = 2, #ARGV, 2 do
  rcall('APPEND', fill(template, ARGV[i]), ARGV[i + 1])
end
return (#ARGV - 1) / 2
