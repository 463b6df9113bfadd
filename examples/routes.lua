-- An example routes.lua: application errors to syslog, everything else as JSON lines.
--
-- Check it with `luaspout check examples/routes.lua`, run it with
-- `luaspout --config examples/routes.lua`.

local syslog_host = spout.env("SYSLOG_HOST", "127.0.0.1:514")

-- stderr of every "*_app" container to syslog over TCP, health checks left out.
route {
  name   = "app-errors",
  to     = "syslog+tcp://" .. syslog_host .. "?append_tag=.app",
  match  = { name = "*_app", sources = { "stderr" } },
  filter = function (msg) return not msg.data:find("GET /health", 1, true) end,
}

-- Every container, one JSON object per line, to a collector on TCP.
route {
  name   = "json",
  to     = "raw+tcp://127.0.0.1:5000",
  format = function (msg)
    return spout.json {
      time      = msg.time,
      container = msg.container.name,
      image     = msg.container.image,
      stream    = msg.source,
      log       = msg.data,
    }
  end,
}
