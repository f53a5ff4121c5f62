-- Takes a legacy key `session:<id>` out of the way, if it still holds what the caller read:
-- renamed to KEYS[2] (the quarantine: one server only, the two keys are in different cluster
-- slots), or deleted when there is no KEYS[2] (an expired record in move mode, or on a
-- cluster a non-record the caller has already restored under its quarantine key).
-- KEYS[1] session:<id>; KEYS[2] (optional) session-quarantine:<handle>.
-- ARGV[1] 'string' with ARGV[2] the value read (an unparseable or expired record), or
-- 'other': a key of another type, never a record, whatever it holds now.
-- Returns 1 done, 0 the key went or changed since it was read (nothing done: the caller
-- checks it again), -1 KEYS[2] exists already (nothing done).
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return 0 end
if ARGV[1] == 'string' then
  if kind ~= 'string' or redis.call('GET', KEYS[1]) ~= ARGV[2] then return 0 end
elseif kind == 'string' then
  return 0
end
if KEYS[2] then
  if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
  redis.call('RENAME', KEYS[1], KEYS[2])
else
  redis.call('DEL', KEYS[1])
end
return 1
