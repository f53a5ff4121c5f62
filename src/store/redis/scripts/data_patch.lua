-- Applies a data patch to a live session: sets and removes keys of the record's "data"
-- object, atomically, keeping the TTL. Only the data member is rewritten: every other byte
-- of the record stays the writer's, and so does every data value the patch does not touch
-- (values are copied as text, never decoded and re-encoded). Never recreates a deleted key.
-- KEYS[1] the session key; ARGV[1] now (ms); ARGV[2] the keys to set, as one JSON object
-- written by the crate (plain keys); ARGV[3..] the keys to remove.
-- Returns 1 when applied, 0 when there is no live record, -1 for an unreadable value.
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local ok, record = pcall(cjson.decode, v)
if not ok or type(record) ~= 'table' then return -1 end
local expires_at = tonumber(record['expires_at'])
if expires_at == nil then return -1 end
if expires_at <= tonumber(ARGV[1]) then return 0 end

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

local top, close = members(v, ws(v, 1))
local data_member
for _, m in ipairs(top) do
  if m.key == '"data"' then data_member = m end
end

-- The current data, as raw members; a "data" that is not an object counts as none.
local kept = {}
local drop = {}
local sets, _ = members(ARGV[2], 1)
for _, m in ipairs(sets) do drop[m.key] = true end
for k = 3, #ARGV do drop['"' .. ARGV[k] .. '"'] = true end
if data_member and string.sub(v, data_member.value, data_member.value) == '{' then
  local current, _ = members(v, data_member.value)
  for _, m in ipairs(current) do
    if not drop[m.key] then table.insert(kept, string.sub(v, m.from, m.to - 1)) end
  end
end
for _, m in ipairs(sets) do table.insert(kept, string.sub(ARGV[2], m.from, m.to - 1)) end
local data = '{' .. table.concat(kept, ',') .. '}'

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
