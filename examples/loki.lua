-- Grafana Loki and LogDNA (Mezmo) payloads: the JSON bodies of their push APIs, one complete
-- body per line.
--
-- Loki's POST /loki/api/v1/push takes {"streams":[{"stream":{labels},"values":[["<ns>","line"]]}]}
-- and LogDNA's /logs/ingest takes {"lines":[{"timestamp":ms,"line":…,"app":…,"level":…}]}.
-- luaspout has no HTTP sink yet, so these routes send each body as a line over TCP to a relay
-- that POSTs it (a few lines of Vector, Fluent Bit or nginx+njs); with a future HTTP sink the
-- same `format` works and only batching several messages into one body is new.
--
-- Labels are low-cardinality on purpose (Loki indexes them): compose project and service,
-- stream, host. The container name and ID go in the line, not the labels.
--
-- Try it: printf 'hello\n' | luaspout try --start 2024-01-01T00:00:00Z examples/loki.lua

local host = spout.env("HOST_NAME", "docker-host-1")
local empty = spout.array({})

route {
  name   = "loki",
  to     = spout.env("LOKI_RELAY", "raw+tcp://127.0.0.1:3101"),
  format = function (msg)
    local labels = msg.container.labels
    return {
      streams = {
        {
          stream = {
            host    = host,
            project = labels["com.docker.compose.project"] or "none",
            service = labels["com.docker.compose.service"] or msg.container.name,
            stream  = msg.source,
          },
          -- Loki wants the time as a string of nanoseconds.
          values = { { tostring(msg.time_ns), msg.data } },
        },
      },
    }
  end,
}

route {
  name   = "logdna",
  to     = spout.env("LOGDNA_RELAY", "raw+tcp://127.0.0.1:3102"),
  format = function (msg)
    return {
      lines = {
        {
          timestamp = msg.time_ns // 1000000,   -- milliseconds, an integer
          line      = msg.data,
          app       = msg.container.name,
          level     = msg.source == "stderr" and "ERROR" or "INFO",
          meta      = { image = msg.container.image, id = msg.container.id:sub(1, 12), tags = empty },
        },
      },
    }
  end,
}

local input = {
  { data = "GET / 200", time = "2024-02-03T04:05:06.789Z",
    container = { name = "shop-web-1", id = "3b6ba57db54a0c7d0e2b9f7c1d7a4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d", image = "shop/web:1.4",
                  labels = { ["com.docker.compose.project"] = "shop", ["com.docker.compose.service"] = "web" } } },
  { data = 'boom "quoted"', source = "stderr", time = 1706933107000000001, container = { name = "cron", id = "aa11bb22cc33dd44" } },
}

test {
  name   = "one Loki push body per line",
  route  = "loki",
  input  = input,
  expect = {
    [=[{"streams":[{"stream":{"host":"docker-host-1","project":"shop","service":"web","stream":"stdout"},"values":[["1706933106789000000","GET / 200"]]}]}]=],
    [=[{"streams":[{"stream":{"host":"docker-host-1","project":"none","service":"cron","stream":"stderr"},"values":[["1706933107000000001","boom \"quoted\""]]}]}]=],
  },
}

test {
  name   = "one LogDNA ingest body per line",
  route  = "logdna",
  input  = input,
  expect = {
    [[{"lines":[{"app":"shop-web-1","level":"INFO","line":"GET / 200","meta":{"id":"3b6ba57db54a","image":"shop/web:1.4","tags":[]},"timestamp":1706933106789}]}]],
    [[{"lines":[{"app":"cron","level":"ERROR","line":"boom \"quoted\"","meta":{"id":"aa11bb22cc33","image":"","tags":[]},"timestamp":1706933107000}]}]],
  },
}
