--[[
  A number in the code index for an upload into a pool (docs/index.md): its entries
  name it, and commit_upload.lua records where its offsets land. Makes the pool's
  identity upload (pool hash field `ix`) first if it has none: a pool with `ix` has
  all its codes in the index (codeindex.ensure_all indexes the others).

  KEYS[1] index uploads hash (keys.code_index_uploads)   KEYS[2] pool hash
  ARGV[1] pool id   ARGV[2] 'identity': answer the identity upload's number instead
  Returns: the upload number, or -5 when the pool does not exist
]]
local rcall = redis.call
--@include "common.lua"
--@include "codeindex.lua"
local uploads, pool_key, pool_id = KEYS[1], KEYS[2], ARGV[1]
if rcall('EXISTS', pool_key) == 0 then return -5 end
local ix = {map = uploads}
local identity = cx_identity(ix, pool_key, pool_id)
if ARGV[2] == 'identity' then return identity end
local u = rcall('HINCRBY', uploads, 'seq', 1)
if u >= 16777216 then return redis.error_reply('code index: upload numbers exhausted') end
rcall('HSET', uploads, u, be(0, 4) .. be(0, 4) .. pool_id)
return u
