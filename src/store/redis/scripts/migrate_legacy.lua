-- Legacy sessions to their web keys, on one server (the keys of one id are in different
-- cluster slots: a cluster migrates key by key instead), several per call so the call's
-- cost is shared. Atomic per call, so a logout (a DEL of a legacy key) is either before
-- (nothing copied) or after (it finds the copy through the index). After index.lua.
-- Per session i (from 0): KEYS[3i+1] session:<id>, KEYS[3i+2] session:web:<id>,
-- KEYS[3i+3] the user's index; ARGV[4i+1] the index member, ARGV[4i+2] the record's
-- expires_at (ms), ARGV[4i+3] now (ms), ARGV[4i+4] the value the caller read and checked.
-- ARGV[#ARGV] is '1' to delete the legacy keys (move).
-- Returns, per session: 0 gone or expired, 1 copied, 2 already present, 3 changed since
-- the caller read it (nothing done: the caller checks the new value); +10 when its legacy
-- key was deleted.
local move = ARGV[#ARGV] == '1'
local results = {}
for i = 0, #KEYS / 3 - 1 do
  local legacy, web, index = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local member, expires_at, now, read = ARGV[4 * i + 1], ARGV[4 * i + 2], ARGV[4 * i + 3], ARGV[4 * i + 4]
  local result = 0
  -- A key turned into another type since it was read is "changed" too (pcall: GET on it
  -- is an error, which would abort the whole call).
  local value = redis.pcall('GET', legacy)
  if type(value) == 'table' then
    result = 3
  elseif value and value ~= read then
    result = 3
  elseif value then
    local pttl = redis.call('PTTL', legacy)
    local ttl = pttl
    -- No TTL on the legacy key: the record's own expiry bounds the copy.
    if pttl == -1 then ttl = tonumber(expires_at) - tonumber(now) end
    if ttl > 0 then
      result = 2
      if redis.call('SET', web, value, 'PX', ttl, 'NX') then
        result = 1
        -- The member lives as long as the copy (a bare EXPIRE may have moved the TTL past
        -- the record's expires_at).
        local score = math.max(tonumber(expires_at), tonumber(now) + ttl)
        index_add(index, member, score, now, nil)
      end
      if move and redis.call('DEL', legacy) == 1 then result = result + 10 end
    end
  end
  results[#results + 1] = result
end
return results
