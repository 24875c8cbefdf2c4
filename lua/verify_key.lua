--[[
  Verify an API key and count the request against its rate limit, in one round trip
  (the non-hand-out routes ask Redis for the key on every request anyway). Only a
  valid key is counted: a forged token naming someone's key id cannot use up its limit.
  The count is lua/rate_limit.lua's fixed 1-second window (keys.rate_window).

  KEYS[1] project's API keys hash   KEYS[2] the project's rate-limit windows (prefix)
  ARGV[1] key id   ARGV[2] SHA-256 hex of the presented secret
  ARGV[3] requests/s allowed to an admin key   ARGV[4] to a pos key   (0: no limit)
  ARGV[5] the key's credential in the windows ("key:<key id>")
  Returns: {0} not a valid key, or {1, stored key JSON, wait}: wait is 0 within the
  limit (or when the key's role has none: nothing is counted then), else the ms until
  the window ends (common.lua's count_requests, as lua/rate_limit.lua)
]]
local rcall = redis.call
--@include "common.lua"
local raw = rcall('HGET', KEYS[1], ARGV[1])
-- The stored JSON holds "secret_sha256":"<hex>"; Python compares again in constant time.
if not raw or not string.find(raw, '"secret_sha256":"' .. ARGV[2] .. '"', 1, true) then
  return {0}
end
-- The stored JSON is msgspec's encoding of StoredKey: "role":"admin" or "role":"pos".
local limit = tonumber(string.find(raw, '"role":"admin"', 1, true) and ARGV[3] or ARGV[4])
if limit <= 0 then return {1, raw, 0} end
local waits = count_requests(KEYS[2], rcall('TIME'), {ARGV[5]}, {limit})
return {1, raw, waits[1] or 0}
