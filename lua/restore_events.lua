--[[
  A restore gives back the events of changes Redis lost (journaled hand-outs, redeems,
  releases, and the low-stock and empty-soon alerts hand-outs fired, that neither the snapshot nor the
  surviving Redis holds), under the ids the restore chose, and queues each for whoever
  hears of it, as the script that first wrote it did (emitter in includes/common.lua):
  the project webhook if it takes the type, and a pool's notify targets for its alerts.
  Without that, a change whose outbox entry was lost with Redis's last writes would never
  be told. Run once the project's webhook hash and pool hashes are restored.

  KEYS[1] events stream   KEYS[2] outbox stream   KEYS[3] project webhook hash
  ARGV[1] pool hash template (keys.py, "\0" = pool id)   ARGV[2] number of events
  ARGV[3] user events template (keys.user_events, "\0" = user id)   ARGV[4] its maxlen
  then per event: id, number of fields n, the n fields (name, value, ...; 'type' first,
  and 'pool_id' among them for an alert)
  An event with a non-empty 'user_id' also goes to that user's index, under its id,
  as the live scripts do (add_user_event).
  Returns: the number of events written
]]
local rcall = redis.call
--@include "common.lua"
local emit = emitter(KEYS[1], nil, KEYS[2], KEYS[3])
local pools = {}  -- pool id -> {key, name} (emitter caches its notify there)
local user_events_t, user_maxlen = ARGV[3], ARGV[4]
local at, count = 5, tonumber(ARGV[2])
for _ = 1, count do
  local id, n = ARGV[at], tonumber(ARGV[at + 1])
  local fields = {unpack(ARGV, at + 2, at + 1 + n)}
  local pool, user = nil, ''
  for j = 1, n - 1, 2 do
    if fields[j] == 'user_id' then user = fields[j + 1] end
  end
  if fields[2] == 'POOL_LOW' or fields[2] == 'POOL_EXHAUSTED' or fields[2] == 'POOL_EMPTY_SOON' then
    local pool_id = ''
    for j = 1, n - 1, 2 do
      if fields[j] == 'pool_id' then pool_id = fields[j + 1] end
    end
    pool = pools[pool_id]
    if not pool then
      local key = fill(ARGV[1], pool_id)
      pool = {key = key, name = rcall('HGET', key, 'name') or ''}
      pools[pool_id] = pool
    end
  end
  emit(fields, pool, id)
  if user ~= '' then add_user_event(fill(user_events_t, user), user_maxlen, id, fields) end
  at = at + 2 + n
end
return count
