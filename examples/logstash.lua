-- Logstash: JSON lines over TCP with the fields the classic ELK grok extracts, so the
-- pipeline needs no grok at all.
--
-- The well-known logspout + ELK setup parses logspout's RFC 5424 syslog with
--
--   %{SYSLOG5424PRI}%{NONNEGINT:ver} +(?:%{TIMESTAMP_ISO8601:ts}|-) +(?:%{HOSTNAME:containerid}|-)
--   +(?:%{NOTSPACE:containername}|-) +(?:%{NOTSPACE:proc}|-) +(?:%{WORD:msgid}|-)
--   +(?:%{SYSLOG5424SD:sd}|-|) +%{GREEDYDATA:msg}
--
-- and fails on every line it cannot parse (_grokparsefailure). Here the "logstash" route sends
-- those same fields (containerid, containername, proc, msg, and the priority as
-- syslog5424_pri) as one JSON object per line, with the exact time of the line in
-- @timestamp; Logstash only needs
--
--   input { tcp { port => 5001 codec => json_lines } }
--
-- The "logstash-syslog" route keeps the old way working during a migration: the same lines as
-- RFC 5424 syslog on port 5000, which that grok parses (tests/authoring.rs checks both against
-- the grok). Set LOGSTASH_SYSLOG="" to drop it.
--
-- Try it: printf 'hello\n' | luaspout try examples/logstash.lua

local json_to = spout.env("LOGSTASH_JSON", "raw+tcp://logstash:5001")
local syslog_to = spout.env("LOGSTASH_SYSLOG", "syslog+tcp://logstash:5000")

route {
  name   = "logstash",
  to     = json_to,
  format = function (msg)
    local c = msg.container
    return {
      ["@timestamp"]  = spout.rfc3339(msg.time_ns, 3),
      syslog5424_pri  = msg.source == "stderr" and "11" or "14",
      containerid     = c.hostname,     -- what syslog's HOSTNAME field carried
      containername   = c.name,
      image           = c.image,
      stream          = msg.source,
      msg             = msg.data,
    }
  end,
}

if syslog_to ~= "" then
  route { name = "logstash-syslog", to = syslog_to }
end

test {
  name   = "the grok's fields, as JSON",
  route  = "logstash",
  input  = {
    { data = "GET /cart 200 12ms", time = "2024-03-05T10:20:30.123456789Z",
      container = { name = "shop_web_1", hostname = "3b6ba57db54a", image = "shop/web:1.4" } },
    { data = [[panic: "cart" is nil]], source = "stderr", time = "2024-03-05T10:20:31Z",
      container = { name = "shop_web_1", hostname = "3b6ba57db54a", image = "shop/web:1.4" } },
  },
  expect = {
    [[{"@timestamp":"2024-03-05T10:20:30.123Z","containerid":"3b6ba57db54a","containername":"shop_web_1","image":"shop/web:1.4","msg":"GET /cart 200 12ms","stream":"stdout","syslog5424_pri":"14"}]],
    [[{"@timestamp":"2024-03-05T10:20:31.000Z","containerid":"3b6ba57db54a","containername":"shop_web_1","image":"shop/web:1.4","msg":"panic: \"cart\" is nil","stream":"stderr","syslog5424_pri":"11"}]],
  },
}

test {
  name   = "the same lines as the syslog the grok parses",
  route  = "logstash-syslog",
  input  = {
    { data = "GET /cart 200 12ms", time = "2024-03-05T10:20:30.123456789Z",
      container = { name = "shop_web_1", hostname = "3b6ba57db54a", pid = 4242 } },
  },
  expect = { "<14>1 2024-03-05T10:20:30Z 3b6ba57db54a shop_web_1 4242 - - GET /cart 200 12ms" },
}
