-- Counts one edge of a revocation of a user's sessions: INCR and PEXPIRE together. A key
-- that holds something else than a count (another type, or a string that is not an
-- integer: not this crate's, or damaged) is replaced by a fresh count, so it cannot make
-- every revocation of the user fail.
-- KEYS[1] user-revocations:{<user>}; ARGV[1] its TTL (ms).
-- Returns 1 when it replaced such a key, 0 otherwise.
local replaced = 0
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and (kind ~= 'string' or not string.match(redis.call('GET', KEYS[1]), '^%-?%d+$')) then
  redis.call('DEL', KEYS[1])
  replaced = 1
end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return replaced
