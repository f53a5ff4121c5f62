-- Adds (or moves) one member of a user's index, removes the member ARGV[4] if given (a
-- rotated id), drops dead members (score, the session's expires_at, at or before now), and
-- lets the index key expire with the user's last session.
-- KEYS[1] the index; ARGV[1] the member, ARGV[2] its expires_at (ms), ARGV[3] now (ms).
if ARGV[4] then redis.call('ZREM', KEYS[1], ARGV[4]) end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if top[2] then redis.call('PEXPIREAT', KEYS[1], top[2]) end
return 1
