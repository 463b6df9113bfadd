-- A small JSON decoder in plain Lua, for examples/json-logs.lua (loaded with
-- `require("lib.json_decode")`; `require` looks next to the config file).
--
-- decode(text) returns the value, or nil and a message: a log line that is not JSON is not an
-- error. Objects and arrays become tables, `null` becomes nil (so the key is absent), numbers
-- become Lua integers when they are written without a fraction or exponent.
--
-- It is written for speed in Lua (string.find with anchored patterns, byte codes, no
-- per-character string.sub), but any Lua decoder costs several microseconds per line: parse
-- only the lines that look like JSON (`data:byte(1) == 123`, a `{`), as the example does.

local byte, find, sub, char = string.byte, string.find, string.sub, utf8.char
local tonumber, concat = tonumber, table.concat

local escapes = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n", [114] = "\r", [116] = "\t" }

local decode_value

local function skip(s, i)
  return (find(s, "[^ \t\r\n]", i)) or #s + 1
end

local function decode_string(s, i)
  -- i is just past the opening quote.
  local parts, n = nil, 0
  local start = i
  while true do
    local j = find(s, '["\\]', i)
    if not j then error("unterminated string", 0) end
    if byte(s, j) == 34 then
      if not parts then return sub(s, start, j - 1), j + 1 end
      n = n + 1; parts[n] = sub(s, i, j - 1)
      return concat(parts), j + 1
    end
    parts = parts or {}
    n = n + 1; parts[n] = sub(s, i, j - 1)
    local e = byte(s, j + 1)
    if e == 117 then -- \uXXXX, with surrogate pairs
      local code = tonumber(sub(s, j + 2, j + 5), 16)
      if not code then error("bad \\u escape", 0) end
      i = j + 6
      if code >= 0xD800 and code <= 0xDBFF and sub(s, i, i + 1) == "\\u" then
        local low = tonumber(sub(s, i + 2, i + 5), 16)
        if low and low >= 0xDC00 and low <= 0xDFFF then
          code = 0x10000 + (code - 0xD800) * 0x400 + (low - 0xDC00)
          i = i + 6
        end
      end
      n = n + 1; parts[n] = char(code)
    else
      local c = escapes[e]
      if not c then error("bad escape", 0) end
      n = n + 1; parts[n] = c
      i = j + 2
    end
  end
end

local function decode_object(s, i)
  local t = {}
  i = skip(s, i)
  if byte(s, i) == 125 then return t, i + 1 end
  while true do
    if byte(s, i) ~= 34 then error("expected a key at byte " .. i, 0) end
    local k
    k, i = decode_string(s, i + 1)
    i = skip(s, i)
    if byte(s, i) ~= 58 then error("expected ':' at byte " .. i, 0) end
    t[k], i = decode_value(s, skip(s, i + 1))
    i = skip(s, i)
    local c = byte(s, i)
    if c == 125 then return t, i + 1 end
    if c ~= 44 then error("expected ',' or '}' at byte " .. i, 0) end
    i = skip(s, i + 1)
  end
end

local function decode_array(s, i)
  local t, n = {}, 0
  i = skip(s, i)
  if byte(s, i) == 93 then return t, i + 1 end
  while true do
    n = n + 1
    t[n], i = decode_value(s, i)
    i = skip(s, i)
    local c = byte(s, i)
    if c == 93 then return t, i + 1 end
    if c ~= 44 then error("expected ',' or ']' at byte " .. i, 0) end
    i = skip(s, i + 1)
  end
end

function decode_value(s, i)
  local c = byte(s, i)
  if c == 34 then return decode_string(s, i + 1) end
  if c == 123 then return decode_object(s, i + 1) end
  if c == 91 then return decode_array(s, i + 1) end
  if c == 116 and sub(s, i, i + 3) == "true" then return true, i + 4 end
  if c == 102 and sub(s, i, i + 4) == "false" then return false, i + 5 end
  if c == 110 and sub(s, i, i + 3) == "null" then return nil, i + 4 end
  local _, e = find(s, "^-?%d+%.?%d*[eE]?[-+]?%d*", i)
  if e then
    local text = sub(s, i, e)
    local v = find(text, "[.eE]") and tonumber(text) or math.tointeger(tonumber(text)) or tonumber(text)
    if v then return v, e + 1 end
  end
  error("unexpected " .. (c and ("'" .. char(c) .. "'") or "end of text") .. " at byte " .. i, 0)
end

return function(text)
  local ok, v, i = pcall(decode_value, text, skip(text, 1))
  if not ok then return nil, v end
  if skip(text, i) <= #text then return nil, "trailing text at byte " .. i end
  return v
end
