-- Applications that log JSON: parse each line and send on only the fields that matter, with
-- the container's name and the line's exact time, as one compact JSON object per line.
--
-- The decoder is plain Lua (lib/json_decode.lua, found by `require` next to this file and
-- watched for reloads like the config itself). Parsing costs a few microseconds per line, so
-- only lines that start with `{` are parsed; anything else (a panic, a stack trace, a line
-- from a library that logs text) goes on as `msg`, and nothing is lost.
--
-- Try it (--lines: the JSON lines are the app's data, not messages for `try`):
--   echo '{"level":"info","msg":"paid","order":42,"user":{"id":7},"password":"x"}' \
--     | luaspout try --lines examples/json-logs.lua

local decode = require("lib.json_decode")

-- Fields kept from the app's object, and the names they go out under; in order, so `msg` wins
-- over `message` when a line has both.
local KEEP = {
  { "level", "level" }, { "message", "msg" }, { "msg", "msg" }, { "error", "error" },
  { "trace_id", "trace_id" }, { "order", "order_id" },
}

route {
  name   = "app-json",
  to     = spout.env("DEST", "raw+tcp://127.0.0.1:5000"),
  format = function (msg)
    local out = {
      time      = spout.rfc3339(msg.time_ns, 3),
      container = msg.container.name,
    }
    local doc = msg.data:byte(1) == 123 and decode(msg.data)
    if type(doc) ~= "table" then
      out.level = msg.source == "stderr" and "error" or "info"
      out.msg = msg.data
      return out
    end
    for i = 1, #KEEP do
      local from, to = KEEP[i][1], KEEP[i][2]
      local v = doc[from]
      if v ~= nil and type(v) ~= "table" then out[to] = v end
    end
    -- A nested field, flattened.
    if type(doc.user) == "table" then out.user_id = doc.user.id end
    return out
  end,
}

test {
  name   = "selected fields of JSON lines, text lines as msg",
  route  = "app-json",
  input  = {
    [[{"level":"info","msg":"payment accepted","order":42,"user":{"id":7,"email":"a@b.c"},"password":"hunter2","amount":19.5}]],
    [[{"level":"error","message":"card declined","error":"insufficient funds","trace_id":"4bf92f3577b34da6","tags":["x"]}]],
    { data = "panic: runtime error: index out of range [3] with length 3", source = "stderr" },
    [[{"level":"warn","msg":"caf\u00e9 \"closed\"","retry":true}]],
    [[{"truncated": ]],
  },
  expect = {
    [[{"container":"try","level":"info","msg":"payment accepted","order_id":42,"time":"2024-01-01T00:00:00.000Z","user_id":7}]],
    [[{"container":"try","error":"insufficient funds","level":"error","msg":"card declined","time":"2024-01-01T00:00:00.001Z","trace_id":"4bf92f3577b34da6"}]],
    [[{"container":"try","level":"error","msg":"panic: runtime error: index out of range [3] with length 3","time":"2024-01-01T00:00:00.002Z"}]],
    [[{"container":"try","level":"warn","msg":"café \"closed\"","time":"2024-01-01T00:00:00.003Z"}]],
    [[{"container":"try","level":"info","msg":"{\"truncated\": ","time":"2024-01-01T00:00:00.004Z"}]],
  },
}
