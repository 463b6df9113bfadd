-- Grafana Loki: lines pushed to its HTTP API (POST /loki/api/v1/push) in batches, one stream
-- per label set, as Loki's push body wants them:
--   {"streams":[{"stream":{labels},"values":[["<ns>","line"], ...]}, ...]}
--
-- `format` turns each message into a small JSON object (its labels, its time, its line);
-- `batch` gets the formatted lines of one batch as a list of strings, groups them by label
-- set and returns the body (a table is sent as JSON). Labels are low-cardinality on purpose
-- (Loki indexes them): host, compose project and service, stream. Container name and ID go in
-- the line, not the labels.
--
-- LOKI_URL points it at your Loki (default http://loki:3100/loki/api/v1/push); batches go out
-- every second or at 500 lines, and a Loki that is down or answers 429/5xx is retried.
--
-- Try it: printf 'hello\n' | luaspout try --start 2024-01-01T00:00:00Z examples/loki.lua

local host = spout.env("HOST_NAME", "docker-host-1")

route {
  name           = "loki",
  to             = spout.env("LOKI_URL", "http://loki:3100/loki/api/v1/push"),
  batch_size     = 500,
  flush_interval = "1s",
  format = function (msg)
    local labels = msg.container.labels
    return {
      labels = {
        host    = host,
        project = labels["com.docker.compose.project"] or "none",
        service = labels["com.docker.compose.service"] or msg.container.name,
        stream  = msg.source,
      },
      ts   = tostring(msg.time_ns),   -- Loki wants nanoseconds as a string
      line = msg.data,
    }
  end,
  batch = function (list)
    local streams, by_key = {}, {}
    for _, item in ipairs(list) do
      local e = spout.json_decode(item)
      local l = e.labels
      local key = l.host .. "\0" .. l.project .. "\0" .. l.service .. "\0" .. l.stream
      local s = by_key[key]
      if not s then
        s = { stream = l, values = {} }
        by_key[key] = s
        streams[#streams + 1] = s
      end
      s.values[#s.values + 1] = { e.ts, e.line }
    end
    return { streams = streams }
  end,
}

test {
  name   = "one push body per batch, one stream per label set",
  route  = "loki",
  input  = {
    { data = "GET / 200", time = "2024-02-03T04:05:06.789Z",
      container = { name = "shop-web-1", labels = { ["com.docker.compose.project"] = "shop", ["com.docker.compose.service"] = "web" } } },
    { data = 'boom "quoted"', source = "stderr", time = 1706933107000000001, container = { name = "cron" } },
    { data = "GET /cart 200", time = "2024-02-03T04:05:07.5Z",
      container = { name = "shop-web-1", labels = { ["com.docker.compose.project"] = "shop", ["com.docker.compose.service"] = "web" } } },
  },
  expect = {
    [=[{"streams":[{"stream":{"host":"docker-host-1","project":"shop","service":"web","stream":"stdout"},"values":[["1706933106789000000","GET / 200"],["1706933107500000000","GET /cart 200"]]},{"stream":{"host":"docker-host-1","project":"none","service":"cron","stream":"stderr"},"values":[["1706933107000000001","boom \"quoted\""]]}]}]=],
  },
}
