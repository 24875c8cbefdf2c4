--[[
  Read one small slice of a project's state for a snapshot, together with the
  project's clock, in one atomic step. A snapshot is taken slice by slice while
  codes keep being handed out; the clock read with each slice tells a restore which
  journaled hand-outs, redeems and releases that slice already holds
  (codepool.snapshot, codepool.restore).

  KEYS[1] the key to read   KEYS[2] the project's pools set
  KEYS[3], KEYS[4], ... (kind lists only) more lists to read after KEYS[1]
  ARGV[1] kind: avail | hash | hscan | list | lists | xrange | string
  ARGV[2] pool hash template   ARGV[3] available list template (keys.py, "\0" = pool id)
  ARGV[4], ARGV[5] by kind:
    avail   position to read from, count     (KEYS[1] a pool's available list;
                                               ARGV[6] that pool's id)
    hash    -, -                             (the whole hash: only for small ones)
    hscan   cursor, count
    list    start index, count
    lists   count per list, -                (many small lists in one call: the
                                               snapshot's per-user code lists)
    xrange  exclusive start id ("" = from the first entry), count
    string  -, -                             (a pool's per-minute counters of a day)
  Returns: {clock, data}
    clock: {pool_id, popped, end, redeemed, ...} for every pool of the project, where
      popped = codes ever popped from the available list (issue.lua), end = popped +
      its length (grows with every upload and release), redeemed = redeems so far
    data by kind:
      avail   {from, {code_1, ...}}: codes at positions from, from+1, ...; from is
              the asked position, or the pool's popped when codes were popped since
      hash    {field, value, ...}
      hscan   {next cursor, {field, value, ...}}
      list    {length, {item, ...}}
      lists   {{length, pttl, {item, ...}}, ...}: one entry per list, KEYS[1] first,
              then KEYS[3], KEYS[4], ...; items are the first `count` (index 0 on);
              pttl as PTTL answers it (-1 no expiry, -2 no such key: length 0)
      xrange  {{id, {field, value, ...}}, ...}
      string  {value ("" when gone), pttl}
]]
local rcall = redis.call
--@include "common.lua"
local kind, pool_t, avail_t = ARGV[1], ARGV[2], ARGV[3]

local clock = {}
for _, pool_id in ipairs(rcall('SMEMBERS', KEYS[2])) do
  local counters = rcall('HMGET', fill(pool_t, pool_id), 'popped', 'redeemed')
  local popped = tonumber(counters[1] or '0')
  clock[#clock + 1] = pool_id
  clock[#clock + 1] = popped
  clock[#clock + 1] = popped + rcall('LLEN', fill(avail_t, pool_id))
  clock[#clock + 1] = tonumber(counters[2] or '0')
end

local data
if kind == 'avail' then
  local popped = tonumber(rcall('HGET', fill(pool_t, ARGV[6]), 'popped') or '0')
  -- Codes popped since the last slice are gone from the head; reading by index would
  -- skip as many codes that are still available.
  local from = math.max(tonumber(ARGV[4]), popped)
  local index = from - popped
  data = {from, rcall('LRANGE', KEYS[1], index, index + tonumber(ARGV[5]) - 1)}
elseif kind == 'hash' then
  data = rcall('HGETALL', KEYS[1])
elseif kind == 'hscan' then
  data = rcall('HSCAN', KEYS[1], ARGV[4], 'COUNT', ARGV[5])
elseif kind == 'list' then
  local start = tonumber(ARGV[4])
  data = {rcall('LLEN', KEYS[1]), rcall('LRANGE', KEYS[1], start, start + tonumber(ARGV[5]) - 1)}
elseif kind == 'lists' then
  local last = tonumber(ARGV[4]) - 1
  data = {}
  for i = 1, #KEYS do
    if i ~= 2 then
      local key = KEYS[i]
      data[#data + 1] = {rcall('LLEN', key), rcall('PTTL', key), rcall('LRANGE', key, 0, last)}
    end
  end
elseif kind == 'string' then
  data = {rcall('GET', KEYS[1]) or '', rcall('PTTL', KEYS[1])}
elseif kind == 'xrange' then
  local start = '-'
  if ARGV[4] ~= '' then start = '(' .. ARGV[4] end
  data = rcall('XRANGE', KEYS[1], start, '+', 'COUNT', ARGV[5])
else
  return redis.error_reply('unknown kind ' .. kind)
end
return {clock, data}
