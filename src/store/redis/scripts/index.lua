-- The per-user index, shared by the scripts that add to it: adds (or moves) one member,
-- removes the member `replaced` if given (a rotated id), drops dead members (score, the
-- session's expires_at, at or before now), and lets the index key expire with the user's
-- last session. An index key of another type than a sorted set (not this crate's, or
-- damaged) is replaced first: it lists nothing, and would make every sign-in of the user
-- fail. Returns true when it replaced one.
local function index_add(index, member, expires_at, now, replaced)
  local foreign = false
  local kind = redis.call('TYPE', index)['ok']
  if kind ~= 'zset' and kind ~= 'none' then
    redis.call('DEL', index)
    foreign = true
  end
  if replaced then redis.call('ZREM', index, replaced) end
  redis.call('ZADD', index, expires_at, member)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', index, top[2]) end
  return foreign
end
