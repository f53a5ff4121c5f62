-- The per-user index, shared by the scripts that add to it: adds (or moves) one member,
-- removes the member `replaced` if given (a rotated id), drops dead members (score, the
-- session's expires_at, at or before now), and lets the index key expire with the user's
-- last session.
local function index_add(index, member, expires_at, now, replaced)
  if replaced then redis.call('ZREM', index, replaced) end
  redis.call('ZADD', index, expires_at, member)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', index, top[2]) end
end
