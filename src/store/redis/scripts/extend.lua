-- Slides a session: moves "expires_at" inside the stored JSON and the key's TTL together,
-- without re-encoding (every other byte stays the writer's). Never recreates a deleted key
-- nor extends a record expired at `now`.
-- KEYS[1] the session key; ARGV[1] the new expires_at (ms), ARGV[2] the TTL (s), ARGV[3] now (ms).
-- Returns the record's user_id (so the caller can move the user-index score along; 1 if it
-- has none), 0 when there is nothing to extend, -1 for an unreadable value (a key of
-- another type included: not a record, so nothing to extend).
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'table' and v.err then return -1 end
if not v then return 0 end
local current = tonumber(string.match(v, '"expires_at"%s*:%s*([-%d%.eE+]+)'))
if current == nil then return -1 end
if current <= tonumber(ARGV[3]) then return 0 end
local n, count = string.gsub(v, '"expires_at"%s*:%s*[-%d%.eE+]+', '"expires_at":' .. ARGV[1], 1)
if count ~= 1 then return -1 end
redis.call('SET', KEYS[1], n, 'EX', ARGV[2])
local user = string.match(v, '"user_id"%s*:%s*"([%x%-]+)"')
return user or 1
