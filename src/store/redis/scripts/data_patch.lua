-- Applies a data patch to a live session: sets and removes keys of the record's "data"
-- object, atomically, keeping the TTL, if the data stays within its limits. Only the data
-- member is rewritten: every other byte of the record stays the writer's, and so does every
-- data value the patch does not touch (values are copied as text, never decoded and
-- re-encoded). Never recreates a deleted key.
-- KEYS[1] the session key; ARGV[1] now (ms); ARGV[2] the most bytes of the data object;
-- ARGV[3] the most keys; ARGV[4] the keys to set, as one JSON object written by the crate
-- (compact, plain keys); ARGV[5..] the keys to remove (plain keys).
-- Returns 1 when applied, 0 when there is no live record, -1 for an unreadable value, -2
-- when the data with the patch would pass a limit (and grow): nothing is written then.
--
-- The limits: the data object with the patch, as it would be stored, is measured in bytes
-- and distinct keys. It must be within both, or, for data already past a limit (written so
-- by another writer), not grow in that measure: removals always go through.
--
-- Cost: one pass over the record and the patch. With the limits enforced here, on every
-- write, no writer of this crate can grow a record past them, so the pass stays short.
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local ok, record = pcall(cjson.decode, v)
if not ok or type(record) ~= 'table' then return -1 end
local expires_at = tonumber(record['expires_at'])
if expires_at == nil then return -1 end
if expires_at <= tonumber(ARGV[1]) then return 0 end
local max_bytes, max_keys = tonumber(ARGV[2]), tonumber(ARGV[3])

-- A JSON text scanner that only finds where values start and end (cjson has validated it).
local function ws(s, i)
  return string.find(s, '[^ \t\r\n]', i) or (#s + 1)
end
local function string_end(s, i) -- s:sub(i, i) == '"'; the index after the closing quote
  local j = i + 1
  while true do
    local q = string.find(s, '["\\]', j)
    if not q then return #s + 1 end
    if string.sub(s, q, q) == '\\' then j = q + 2 else return q + 1 end
  end
end
local function value_end(s, i) -- the index after the value starting at i
  local c = string.sub(s, i, i)
  if c == '"' then return string_end(s, i) end
  if c == '{' or c == '[' then
    local depth, j = 0, i
    while j <= #s do
      local p = string.find(s, '[%[%]{}"]', j)
      if not p then return #s + 1 end
      local d = string.sub(s, p, p)
      if d == '"' then
        j = string_end(s, p)
      else
        if d == '{' or d == '[' then depth = depth + 1 else depth = depth - 1 end
        j = p + 1
        if depth == 0 then return j end
      end
    end
    return #s + 1
  end
  return string.find(s, '[ \t\r\n,}%]]', i) or (#s + 1)
end
-- The members of the object starting at i: { {key = raw key, from, to (value end)} ... }
-- and the index of its closing brace.
local function members(s, i)
  local list = {}
  local j = ws(s, i + 1)
  if string.sub(s, j, j) == '}' then return list, j end
  while j <= #s do
    local key_end = string_end(s, j)
    local colon = ws(s, key_end)
    local value_start = ws(s, colon + 1)
    local after = value_end(s, value_start)
    table.insert(list, { key = string.sub(s, j, key_end - 1), from = j, value = value_start, to = after })
    j = ws(s, after)
    if string.sub(s, j, j) == '}' then return list, j end
    j = ws(s, j + 1) -- past the comma
  end
  return list, #s
end
-- A raw key (with its quotes) as the string it stands for: another writer may have escaped
-- characters (`"th\u0065me"` is the key theme), so keys are compared decoded.
local function name_of(raw)
  if string.find(raw, '\\', 1, true) then
    local decoded, name = pcall(cjson.decode, raw)
    if decoded and type(name) == 'string' then return name end
  end
  return string.sub(raw, 2, -2)
end

local top, close = members(v, ws(v, 1))
local data_member
for _, m in ipairs(top) do
  if name_of(m.key) == 'data' then data_member = m end
end

-- The current data, as raw members; a "data" that is not an object counts as none ({}).
local kept = {}
local drop = {}
local before_bytes, before_keys, after_keys = 2, 0, 0
local sets, _ = members(ARGV[4], 1)
for _, m in ipairs(sets) do drop[string.sub(m.key, 2, -2)] = true end
for k = 5, #ARGV do drop[ARGV[k]] = true end
if data_member and string.sub(v, data_member.value, data_member.value) == '{' then
  before_bytes = data_member.to - data_member.value
  local current, _ = members(v, data_member.value)
  local seen, kept_names = {}, {}
  for _, m in ipairs(current) do
    local name = name_of(m.key)
    if not seen[name] then
      seen[name] = true
      before_keys = before_keys + 1
    end
    if not drop[name] then
      table.insert(kept, string.sub(v, m.from, m.to - 1))
      if not kept_names[name] then
        kept_names[name] = true
        after_keys = after_keys + 1
      end
    end
  end
end
for _, m in ipairs(sets) do
  table.insert(kept, string.sub(ARGV[4], m.from, m.to - 1))
  after_keys = after_keys + 1
end
local data = '{' .. table.concat(kept, ',') .. '}'

local after_bytes = #data
if (after_bytes > max_bytes and after_bytes > before_bytes)
    or (after_keys > max_keys and after_keys > before_keys) then
  return -2
end

local out
if data_member then
  if #kept > 0 then
    out = string.sub(v, 1, data_member.from - 1) .. '"data":' .. data .. string.sub(v, data_member.to)
  else
    -- No data left: the member goes, with the comma before it (data is never alone).
    local before = string.sub(v, 1, data_member.from - 1)
    local comma = string.find(before, ',[ \t\r\n]*$')
    if comma then
      out = string.sub(v, 1, comma - 1) .. string.sub(v, data_member.to)
    else
      out = before .. string.gsub(string.sub(v, data_member.to), '^[ \t\r\n]*,', '', 1)
    end
  end
elseif #kept > 0 then
  local sep = (#top > 0) and ',' or ''
  out = string.sub(v, 1, close - 1) .. sep .. '"data":' .. data .. string.sub(v, close)
else
  return 1
end
redis.call('SET', KEYS[1], out, 'KEEPTTL')
return 1
