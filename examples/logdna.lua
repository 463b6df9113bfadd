-- LogDNA (Mezmo) ingestion, as the logdna/logspout fork sends it: batches POSTed over HTTPS to
-- /logs/ingest?hostname=… with the ingestion key in an `apikey` header and the body
--   {"lines":[{"timestamp":ms,"line":"…","app":"…","level":"INFO"|"ERROR","meta":{…}}, ...]}
--
-- Batching follows the fork: flushed every 250 ms or at 2 MB (luaspout's defaults), and a
-- failed batch is retried instead of dropped; a 4xx (a bad key) is logged with LogDNA's answer.
-- Empty lines are dropped, as the fork does.
--
--   LOGDNA_KEY=…  HOST_NAME=$(hostname)  luaspout --config examples/logdna.lua
--
-- Try it: printf 'hello\n' | luaspout try --start 2024-01-01T00:00:00Z examples/logdna.lua

local host = spout.env("HOST_NAME", "docker-host-1")
local empty = spout.array({})

route {
  name    = "logdna",
  to      = spout.env("LOGDNA_URL", "https://logs.logdna.com/logs/ingest") .. "?hostname=" .. host,
  headers = { apikey = spout.env("LOGDNA_KEY", "") },
  filter  = function (msg) return #msg.data > 0 end,
  format  = function (msg)
    return {
      timestamp = msg.time_ns // 1000000,   -- milliseconds, an integer
      line      = msg.data,
      app       = msg.container.name,
      level     = msg.source == "stderr" and "ERROR" or "INFO",
      meta      = { image = msg.container.image, id = msg.container.id:sub(1, 12), tags = empty },
    }
  end,
  batch = function (list)
    local lines = {}
    for i, item in ipairs(list) do lines[i] = spout.json_decode(item) end
    return { lines = lines }
  end,
}

test {
  name   = "one ingest body per batch",
  input  = {
    { data = "GET / 200", time = "2024-02-03T04:05:06.789Z",
      container = { name = "shop-web-1", id = "3b6ba57db54a0c7d0e2b9f7c1d7a4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d", image = "shop/web:1.4" } },
    { data = "", container = { name = "cron" } },
    { data = 'boom "quoted"', source = "stderr", time = 1706933107000000001, container = { name = "cron", id = "aa11bb22cc33dd44" } },
  },
  expect = {
    [[{"lines":[{"app":"shop-web-1","level":"INFO","line":"GET / 200","meta":{"id":"3b6ba57db54a","image":"shop/web:1.4","tags":[]},"timestamp":1706933106789},{"app":"cron","level":"ERROR","line":"boom \"quoted\"","meta":{"id":"aa11bb22cc33","image":"","tags":[]},"timestamp":1706933107000}]}]],
  },
}
