-- KEYS[1] the index; ARGV[1] the member, ARGV[2] its expires_at (ms), ARGV[3] now (ms),
-- ARGV[4] (optional) a member to remove. After index.lua.
-- Returns 2 when an index of another type was replaced, 1 otherwise.
if index_add(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4]) then return 2 end
return 1
